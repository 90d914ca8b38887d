"""Local fakes of the providers' cloud APIs, speaking their real request and
response shapes on loopback (base.py holds what they share). Tests start them as
fixtures; `make run` can point the demo at them."""
