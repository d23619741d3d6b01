
6
4
:


server
"	:


server"	"ã
comp_argÖ
:


server"	*»
•
_var2‹
:


server"	:ğ
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
federated_apply„
64



"	"	
:


server
"	BÉ
š—



"	"	"€
server_fn_argo
"	*g
T
_var1K
"	:C
$



"	"	
sequence_sum

"	2
server_fn_arg
"	2
_var1
*(
:


server
"	2

comp_arg!
:


server"	2
_var2