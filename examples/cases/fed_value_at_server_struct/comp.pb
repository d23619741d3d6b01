
N
L

	
a"

b"-:+


server
	
a"

b""è
comp_argÛ
-:+


server
	
a"

b"*©
á
fc_comp_symbol_0Ì
-:+


server
	
a"

b":š
m
N
L

	
a"

b"-:+


server
	
a"

b"
federated_value_at_server)

	
a"

b"2

comp_argC
-:+


server
	
a"

b"2
fc_comp_symbol_0