module regcred-operator.test/node/pause

go 1.26
