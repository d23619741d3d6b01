
9
7
:
	
clients":


server""‹
comp_argş
:


server"*ß
ª
fc_comp_symbol_0•
:


server":w
L
9
7
:
	
clients":


server"
federated_min'
:
	
clients"2

comp_arg0
:


server"2
fc_comp_symbol_0