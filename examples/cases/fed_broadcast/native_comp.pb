
9
7
:


server":
	
clients""û
comp_argî
:
	
clients"*Ï
¥
_var1›
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

comp_arg%
:
	
clients"2
_var1