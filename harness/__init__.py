"""What the tests, `bench/`, `reliability/` and `ops/` share to drive the real service: start it
on loopback and stop it by PID (`live_server`), and load it (`load`: wrk and recorded clients)."""
