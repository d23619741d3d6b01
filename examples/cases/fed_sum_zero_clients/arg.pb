*

	
clients"