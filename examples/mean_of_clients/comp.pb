
1
/
:
	
clients":


server"" 
mean_of_clients_argˆ
:


server"*í
±
fc_mean_of_clients_symbol_0‘
:


server":w
E
1
/
:
	
clients":


server"
federated_mean.
:
	
clients"2
mean_of_clients_arg7
:


server"2
fc_mean_of_clients_symbol_0