
6
4
:


server
"	:


server"	"›
comp_arg
:


server"	*ó
Â
fc_comp_symbol_0­
:


server"	:’
g
R
P
64



"	"	
:


server
"	:


server"	
federated_apply¦
64



"	"	
:


server
"	Bë
¼¹



"	"	"¢
server_fn_arg
"	*‡
d
fc_server_fn_symbol_0K
"	:C
$



"	"	
sequence_sum

"	2
server_fn_arg
"	2
fc_server_fn_symbol_0
*(
:


server
"	2

comp_arg,
:


server"	2
fc_comp_symbol_0