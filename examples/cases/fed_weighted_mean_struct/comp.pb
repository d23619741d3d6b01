
…
‚
QO
1
x,:*
	
clients

a"
	
b"

w:
	
clients"-:+


server

a"
	
b""Ö
comp_argÉ
-:+


server

a"
	
b"*—
Ï
fc_comp_symbol_0º
-:+


server

a"
	
b":ˆ
›
~
|
KI
.,:*
	
clients

a"
	
b"
:
	
clients"-:+


server

a"
	
b"
federated_weighted_meanç
KI
.,:*
	
clients

a"
	
b"
:
	
clients"B—
”‘
,:*
	
clients

a"
	
b"Ja
_
QO
1
x,:*
	
clients

a"
	
b"

w:
	
clients"2

comp_arg
~|
:
	
clients"Jc
_
QO
1
x,:*
	
clients

a"
	
b"

w:
	
clients"2

comp_argC
-:+


server

a"
	
b"2
fc_comp_symbol_0