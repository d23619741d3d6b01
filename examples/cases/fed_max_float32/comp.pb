
9
7
:
	
clients":


server""‹
comp_argþ
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
federated_max'
:
	
clients"2

comp_arg0
:


server"2
fc_comp_symbol_0