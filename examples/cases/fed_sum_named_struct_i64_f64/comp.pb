
o
m
4:2
	
clients#!

count"	

total"5:3


server#!

count"	

total""¯
comp_arg¢
5:3


server#!

count"	

total"*è
˜
fc_comp_symbol_0ƒ
5:3


server#!

count"	

total":É
‚
o
m
4:2
	
clients#!

count"	

total"5:3


server#!

count"	

total"
federated_sumB
4:2
	
clients#!

count"	

total"2

comp_argK
5:3


server#!

count"	

total"2
fc_comp_symbol_0