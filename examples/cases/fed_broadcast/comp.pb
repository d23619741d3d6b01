
9
7
:


server":
	
clients""‘
comp_arg„
:
	
clients"*å
°
fc_comp_symbol_0›
:
	
clients":}
R
9
7
:


server":
	
clients"
federated_broadcast'
:


server"2

comp_arg0
:
	
clients"2
fc_comp_symbol_0