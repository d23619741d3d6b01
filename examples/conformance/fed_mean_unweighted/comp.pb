
1
/
:
	
clients":


server""ô
comp_argç
:


server"*Ì
›
fc_comp_symbol_0†
:


server":l
E
1
/
:
	
clients":


server"
federated_mean#
:
	
clients"2

comp_arg,
:


server"2
fc_comp_symbol_0