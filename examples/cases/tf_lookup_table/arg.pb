2'
Š
apple
kiwi
cherry
banana