
¡

,:*
	
clients

a"
	
b"nl
4
min-:+


server

a"
	
b"
4
max-:+


server

a"
	
b""‚
comp_argõ
nl
4
min-:+


server

a"
	
b"
4
max-:+


server

a"
	
b"*‚
÷
fc_comp_symbol_0â
-:+


server

a"
	
b":°
r
_
]
,:*
	
clients

a"
	
b"-:+


server

a"
	
b"
federated_min:
,:*
	
clients

a"
	
b"2

comp_arg
÷
fc_comp_symbol_1â
-:+


server

a"
	
b":°
r
_
]
,:*
	
clients

a"
	
b"-:+


server

a"
	
b"
federated_max:
,:*
	
clients

a"
	
b"2

comp_arg‹
nl
4
min-:+


server

a"
	
b"
4
max-:+


server

a"
	
b"B˜
J
minC
-:+


server

a"
	
b"2
fc_comp_symbol_0
J
maxC
-:+


server

a"
	
b"2
fc_comp_symbol_1