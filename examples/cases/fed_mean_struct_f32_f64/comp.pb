
_
]
,:*
	
clients

a"
	
b"-:+


server

a"
	
b""ÿ
comp_argò
-:+


server

a"
	
b"*À
ø
fc_comp_symbol_0ã
-:+


server

a"
	
b":±
s
_
]
,:*
	
clients

a"
	
b"-:+


server

a"
	
b"
federated_mean:
,:*
	
clients

a"
	
b"2

comp_argC
-:+


server

a"
	
b"2
fc_comp_symbol_0