
7
5
:
	
clients":


server""…
comp_argø
:


server"*Ú
¦
fc_comp_symbol_0‘
:


server":t
J
7
5
:
	
clients":


server"
federated_sum&
:
	
clients"2

comp_arg/
:


server"2
fc_comp_symbol_0