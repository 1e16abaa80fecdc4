"""Fault injection: the bin killed, stalled and starved in each stage, with real parts.

Capture (a real MJPEG server on 127.0.0.1 that stalls, drops and sends garbage; image
folders with undecodable entries), inference (the real ONNX engine wrapped so that it
raises or hangs), actuation (the real PCA9685 driver over a simulated ServoKit: the
I2C hardware is the only thing simulated), store (a real full disk and a real
read-only folder in a private mount namespace, SIGKILL mid-write, a second process)
and stream clients (clients that never read, never ask, or leave mid-frame).

After each, the invariants (``faults.invariants``):

* no door open longer than hold_s + 1 s, and every door closed at the end (a run
  killed with SIGKILL cannot close its doors: the next run closes them before its
  first frame);
* no committed sample lost: the real SQLite store reopened, every row seen committed
  before the fault still there with its image whole;
* no file deleted that the store did not write (user files planted first);
* the process exits with a documented code (``wastenet.errors.ExitCode``, README) or
  recovers and goes on.
"""
