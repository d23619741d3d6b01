
\
Z
=;

x:
	
clients"

w:
	
clients":


server""Ÿ
comp_arg’
:


server"*ô
À
fc_comp_symbol_0«
:


server":
s
V
T
75
:
	
clients"
:
	
clients":


server"
federated_weighted_mean•
75
:
	
clients"
:
	
clients"BÙ
ki
:
	
clients"JM
K
=;

x:
	
clients"

w:
	
clients"2

comp_arg
jh
:
	
clients"JO
K
=;

x:
	
clients"

w:
	
clients"2

comp_arg/
:


server"2
fc_comp_symbol_0