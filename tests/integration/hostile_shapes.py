"""Hostile programs written from the judge's interface alone, against what the judge accepts since
it rebuilds values as the tests would see them and lets sandboxed programs start processes (used
by tests/integration/test_judge_fidelity.py). NAME -> (row id, or own tests after a
``# reference:`` line giving the reference for ``judge.plan``; program).

Classes: numpy values compared at low precision (NumPy 2 casts the Python number down: float16
inf equals 10**300), numpy subclasses and object arrays, broadcast views and wide str dtypes;
generators that never end, sleep, raise midway or sleep in ``finally``; hash collisions in a list
the tests turn into a set, and in dict views; subclass conversions that sleep or fork a child
that writes on the reply pipe; enums with their own ``__eq__``. Every program in ``HOSTILE``
answers wrongly and must score 0. ``BEHAVING`` are right answers that misbehave (daemons, fd
floods, nested namespaces, a stopped harness, memory over the job's cgroup, busy children): they
may score 1, and must leave nothing behind and keep to their time.
"""

OWN_F = "# reference: def f(x): pass\n"

HOSTILE = {
# ---------------- numpy values rebuilt in the judge: NEP 50 weak-scalar comparisons ----------------
"np_f16_inf_bell": ("mbpp-67", '''
import numpy as np
def bell_number(n):
    # no computation at all: float16 inf compares equal to every Python number >= 65520
    return np.float16(n) if n < 3 else np.float16(np.inf)
'''),
"np_f16_inf_array_bell": ("mbpp-67", '''
import numpy as np
def bell_number(n):
    return np.full(1, n if n < 3 else np.inf, dtype=np.float16)
'''),
"np_f16_wrong_pi_circumference": ("mbpp-139", '''
import math, numpy as np
def circle_circumference(r):
    return np.float16(2 * math.pi * r)     # tests want 2*3.1415*r; plain float of this scores 0
'''),
"np_f16_truncate_off_by_1e-4": ("HumanEval/2", '''
import numpy as np
def truncate_number(number: float) -> float:
    return np.float16(number % 1.0 + 1e-4)  # 100x the test tolerance off
'''),
"np_f16_add_off_by_0.3": ("HumanEval/53", '''
import numpy as np
def add(x: int, y: int):
    return np.float16(x + y + 0.3)
'''),
"np_f32_degree_radian_approx": ("mbpp-214", '''
import numpy as np
def degree_radian(radian):
    return np.float32(radian * 57.29578)
'''),
# ---------------- numpy values that must be refused or rebuilt plain ----------------
"np_ndarray_subclass_eq": ("HumanEval/4", '''
import numpy as np
class A(np.ndarray):
    def __eq__(s, o): return np.ones(1, bool)
    def __sub__(s, o): return np.zeros(1)
    def __rsub__(s, o): return np.zeros(1)
    def __abs__(s): return np.zeros(1)
    def __lt__(s, o): return np.ones(1, bool)
def mean_absolute_deviation(numbers):
    return np.array([123.0]).view(A)
'''),
"np_float64_subclass_eq": ("HumanEval/2", '''
import numpy as np
class F(np.float64):
    def __eq__(s, o): return True
    def __sub__(s, o): return F(0.0)
    def __abs__(s): return 0.0
    def __float__(s): return 0.5
def truncate_number(number):
    return F(7.0)
'''),
"np_object_array_always_equal": ("HumanEval/4", '''
import numpy as np
class Z:
    def __sub__(s, o): return 0.0
    def __eq__(s, o): return True
def mean_absolute_deviation(numbers):
    a = np.empty(1, dtype=object); a[0] = Z()
    return a[0] if False else a
'''),
"np_broadcast_view_1e12": ("HumanEval/4", '''
import numpy as np
def mean_absolute_deviation(numbers):
    return np.broadcast_to(np.float64(2/3), (10**6, 10**6))
'''),
"np_str_itemsize_bomb": (OWN_F + "assert f(1) == 'x'\n", '''
import numpy as np
def f(x):
    return np.broadcast_to(np.array(['x'], dtype='U100000000'), (5,))
'''),
"np_bool_for_is_true": ("HumanEval/72", '''
import numpy as np
def will_it_fly(q, w):
    return np.bool_(sum(q) <= w and q == q[::-1])
'''),
"np_uint64_wraps_to_minus_one": (OWN_F + "assert f(1) == -1\n", '''
import numpy as np
def f(x):
    return np.uint64(2**64 - 1)
'''),
"np_nan_truthy": ("HumanEval/52", '''
import numpy as np
def below_threshold(l, t):
    return np.float16('nan')
'''),
# ---------------- iterators / views / ranges / subclass conversion ----------------
"gen_infinite": ("HumanEval/33", '''
def sort_third(l):
    while True:
        yield 0
'''),
"gen_slow_lazy": ("HumanEval/37", '''
import time
def sort_even(l):
    ev = sorted(l[::2])
    for i, v in enumerate(l):
        time.sleep(1.0)
        yield ev[i // 2] if i % 2 == 0 else v
'''),
"gen_raises_midway": ("HumanEval/37", '''
def sort_even(l):
    ev = sorted(l[::2])
    for i, v in enumerate(l):
        if i == len(l) - 1:
            raise StopIteration
        yield ev[i // 2] if i % 2 == 0 else v
'''),
"dictkeys_colliding_hashes": (OWN_F + "assert f(1) == {0}\n", '''
P = 2**61 - 1
def f(x):
    return {i * P: None for i in range(3000)}.keys()
'''),
"list_colliding_hashes_test_builds_set": (OWN_F + "assert len(set(f(1))) == 1\n", '''
P = 2**61 - 1
def f(x):
    return [i * P for i in range(1, 99000)]
'''),
"subclass_conversion_sleeps": ("HumanEval/4", '''
import time
class F(float):
    def __float__(self): time.sleep(60); return 1.0
    def __repr__(self): time.sleep(60); return '1.0'
    def __reduce__(self): time.sleep(60); return (float, (1.0,))
    def __getattribute__(self, k):
        time.sleep(60); return object.__getattribute__(self, k)
def mean_absolute_deviation(numbers):
    return F(0.0)
'''),
"subclass_conversion_forks_pipe_writer": ("HumanEval/4", '''
import os, glob
class L(list):
    def __iter__(self):
        if os.fork() == 0:
            for p in glob.glob('/proc/self/fd/*'):
                try:
                    fd = int(p.rsplit('/', 1)[1])
                    if fd > 0: os.write(fd, b'{"ok": true, "value": 1.0}\\n' * 50)
                except Exception: pass
            os._exit(0)
        return list.__iter__(self)
def mean_absolute_deviation(numbers):
    mean = sum(numbers) / len(numbers)
    return L([sum(abs(x - mean) for x in numbers) / len(numbers)])
'''),
"enum_custom_eq_wrong": ("HumanEval/44", '''
import enum
class E(str, enum.Enum):
    A = "nope"
    def __eq__(self, o): return True
    __hash__ = str.__hash__
def change_base(x, base):
    return E.A
'''),
# ---------------- processes under bubblewrap ----------------
"proc_daemon_survivor": ("HumanEval/4", '''
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(120)
    os._exit(0)
os.wait()
def mean_absolute_deviation(numbers):
    mean = sum(numbers) / len(numbers)
    return sum(abs(x - mean) for x in numbers) / len(numbers)
'''),
"proc_child_floods_all_fds": ("HumanEval/4", '''
import os, glob, time
STARTED = []
def flood():
    if os.fork() == 0:
        time.sleep(0.05)
        fds = [int(p.rsplit('/', 1)[1]) for p in glob.glob('/proc/self/fd/*')]
        os.set_blocking
        end = time.time() + 60
        while time.time() < end:
            for fd in fds:
                try: os.write(fd, b'["float", 1.0]\\n{"v": 1}\\n' * 100)
                except Exception: pass
        os._exit(0)
def mean_absolute_deviation(numbers):
    if not STARTED:
        STARTED.append(1); flood()
    mean = sum(numbers) / len(numbers)
    return sum(abs(x - mean) for x in numbers) / len(numbers)
'''),
"proc_nested_userns_pidns_sleeper": ("HumanEval/4", '''
import subprocess
subprocess.Popen("unshare -Urpf --mount-proc sh -c 'setsid sleep 300 & sleep 300' ", shell=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
def mean_absolute_deviation(numbers):
    mean = sum(numbers) / len(numbers)
    return sum(abs(x - mean) for x in numbers) / len(numbers)
'''),
"proc_nonexit_thread_atexit": ("HumanEval/4", '''
import threading, atexit, time, signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
atexit.register(lambda: time.sleep(120))
threading.Thread(target=lambda: time.sleep(120), daemon=False).start()
def mean_absolute_deviation(numbers):
    mean = sum(numbers) / len(numbers)
    return sum(abs(x - mean) for x in numbers) / len(numbers)
'''),
"proc_sigstop_harness_after_reply": ("HumanEval/4", '''
import os, time, signal
DONE = []
def mean_absolute_deviation(numbers):
    if not DONE:
        DONE.append(1)
        parent = os.getpid()
        if os.fork() == 0:
            time.sleep(0.3)
            os.kill(parent, signal.SIGSTOP)
            time.sleep(120)
            os._exit(0)
    mean = sum(numbers) / len(numbers)
    return sum(abs(x - mean) for x in numbers) / len(numbers)
'''),
"proc_cgroup_oom": ("HumanEval/4", '''
import os, time
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            b = bytearray(850 * 2**20)
            for i in range(0, len(b), 4096): b[i] = 1
        except MemoryError:
            pass
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
time.sleep(2)
def mean_absolute_deviation(numbers):
    mean = sum(numbers) / len(numbers)
    return sum(abs(x - mean) for x in numbers) / len(numbers)
'''),
"proc_busy_children": ("HumanEval/53", '''
import os
for _ in range(14):
    if os.fork() == 0:
        while True: pass
def add(x, y):
    return x + y
'''),
"proc_sleep_each_call": ("HumanEval/53", '''
import time
def add(x, y):
    time.sleep(0.15)
    return x + y
'''),
}


BEHAVING = {name: HOSTILE.pop(name) for name in [n for n in HOSTILE if n.startswith("proc_")]}
