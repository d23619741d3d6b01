
'
%
":
	
clients""ó
comp_argæ
:
	
clients"*Ç
’
fc_comp_symbol_0~
:
	
clients":`
G
'
%
":
	
clients"
federated_value_at_clients
"2

comp_arg0
:
	
clients"2
fc_comp_symbol_0