
1
/
:
	
clients":


server""ó
comp_argæ
:


server"*Ë
š
fc_comp_symbol_0…
:


server":k
D
1
/
:
	
clients":


server"
federated_sum#
:
	
clients"2

comp_arg,
:


server"2
fc_comp_symbol_0