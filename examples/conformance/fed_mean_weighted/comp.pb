
V
T
:8

x:
	
clients"

w:
	
clients":


server""„
comp_arg÷
:


server"*Ü
«
fc_comp_symbol_0–
:


server":û
m
P
N
42
:
	
clients"
:
	
clients":


server"
federated_weighted_mean‰
42
:
	
clients"
:
	
clients"BĞ
ec
:
	
clients"JJ
H
:8

x:
	
clients"

w:
	
clients"2

comp_arg
ge
:
	
clients"JL
H
:8

x:
	
clients"

w:
	
clients"2

comp_arg,
:


server"2
fc_comp_symbol_0