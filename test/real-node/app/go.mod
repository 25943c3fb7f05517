module readygate.test/e2e-app

go 1.24
