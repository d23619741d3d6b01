
'
%
":
	
clients""İ
comp_argĞ
:
	
clients"*±
‡
_var1~
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

comp_arg%
:
	
clients"2
_var1