module handler/function

go 1.21
