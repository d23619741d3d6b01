
:
8
:
	
clients	
":
	
clients""Ë
comp_arg¾
:
	
clients"*¡
î
fc_comp_symbol_0Ù
:
	
clients":¼
o
\
Z
><


	
""
:
	
clients	
":
	
clients"
federated_mapÈ
><


	
""
:
	
clients	
"B…
ÔÑ


	
"""´
client_fn_arg¢
"*–
p
fc_client_fn_symbol_0W
":L
*


	
""
sequence_sum
	
"2
client_fn_arg"
"2
fc_client_fn_symbol_0
,*
:
	
clients	
"2

comp_arg.
:
	
clients"2
fc_comp_symbol_0