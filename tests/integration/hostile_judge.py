"""Wrong programs that try to *forge a pass* on real benchmark rows, by class (used by
tests/integration/test_judge.py). Each is written against the task named by its key's prefix; none solves it.

Classes: read the judge's secrets through signal frames, /proc memory, their own audit hooks or
the parent's process; skip the tests (self-restoring exec, compile or exit); values that compare
equal to anything (metaclasses, subclasses, forged Fraction/Decimal, operator overloading);
shadowed builtins and redefined helpers; replaced modules; forged replies on the protocol pipe;
control-flow exceptions; values that stall or exhaust the judge.
"""

_EQ = "class _E:\n    def __eq__(s, o):\n        return True\n    __hash__ = object.__hash__\n"

HOSTILE = {
    # ---- signal handlers walk the interrupted frame (the judge's, in an in-process design)
    "HumanEval/0 signal_usr1_frame_walk": (
        "import signal\n"
        "found = []\n"
        "def h(sig, frame):\n"
        "    f = frame\n"
        "    while f is not None:\n"
        "        found.append(dict(f.f_locals)); f = f.f_back\n"
        "signal.signal(signal.SIGUSR1, h)\nsignal.raise_signal(signal.SIGUSR1)\n"
        "def has_close_elements(numbers, threshold):\n    return True\n"
    ),
    "HumanEval/2 signal_alarm_frame_walk": (
        "import signal, _signal\n"
        "def h(sig, frame):\n    pass\n"
        "_signal.signal(_signal.SIGALRM, h)\nsignal.setitimer(signal.ITIMER_REAL, 0.001)\n"
        "def truncate_number(number):\n    return 0.5\n"
    ),
    "HumanEval/4 signal_in_call": (
        "import signal\n"
        "def mean_absolute_deviation(numbers):\n"
        "    signal.signal(signal.SIGUSR2, lambda s, f: None)\n    return 1.0\n"
    ),
    # ---- /proc memory: symlinks, fd paths, hard links, the parent
    "HumanEval/0 proc_mem_symlink": (
        "import os\nos.symlink('/proc/self/mem', 'm')\nf = open('m', 'rb')\n"
        "def has_close_elements(numbers, threshold):\n    return True\n"
    ),
    "HumanEval/0 proc_mem_relative_symlink": (
        "import os\nos.symlink('../../proc/self/mem', 'm')\nopen('m', 'rb')\n"
        "def has_close_elements(numbers, threshold):\n    return False\n"
    ),
    "HumanEval/0 proc_mem_via_fd_path": (
        "import os\nfd = os.open('/proc/self/maps', os.O_RDONLY)\nopen(f'/proc/self/fd/{fd}', 'rb')\n"
        "def has_close_elements(numbers, threshold):\n    return True\n"
    ),
    "HumanEval/0 proc_parent_cmdline_and_environ": (
        "import os\nleak = open(f'/proc/{os.getppid()}/cmdline', 'rb').read() + open(f'/proc/{os.getppid()}/environ', "
        "'rb').read()\n"
        "def has_close_elements(numbers, threshold):\n    return b'True' in leak\n"
    ),
    "HumanEval/0 proc_all_pids_scan": (
        "import os\nseen = []\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit():\n"
        "        try:\n            seen.append(open(f'/proc/{p}/cmdline', 'rb').read())\n        except Exception:\n   "
        "         pass\n"
        "def has_close_elements(numbers, threshold):\n    return len(seen) > 100\n"
    ),
    # ---- skip or rewrite the tests
    "HumanEval/2 self_restoring_exec": (
        "import builtins\n_real = builtins.exec\n"
        "def _skip(*a, **k):\n    builtins.exec = _real\n"
        "builtins.exec = _skip\n"
        "def truncate_number(number):\n    return 0.0\n"
    ),
    "HumanEval/2 self_restoring_compile": (
        "import builtins\n_real = builtins.compile\n"
        "def _c(src, *a, **k):\n    builtins.compile = _real\n    return _real('pass', *a, **k)\n"
        "builtins.compile = _c\n"
        "def truncate_number(number):\n    return 0.0\n"
    ),
    "HumanEval/2 own_audit_hook_rebuilds_check": (
        "import sys, types\nexpected = {}\n"
        "def hook(event, args):\n"
        "    if event == 'exec':\n"
        "        for c in args[0].co_consts:\n"
        "            if isinstance(c, types.CodeType):\n                expected['code'] = c\n"
        "sys.addaudithook(hook)\n"
        "def truncate_number(number):\n    return 0.5\n"
    ),
    "HumanEval/2 exit_zero_in_call": "import os\ndef truncate_number(number):\n    os._exit(0)\n",
    "HumanEval/2 systemexit_in_call": "def truncate_number(number):\n    raise SystemExit(0)\n",
    "HumanEval/2 stopiteration_in_call": "def truncate_number(number):\n    raise StopIteration\n",
    "HumanEval/2 assertion_error_in_call": "def truncate_number(number):\n    raise AssertionError\n",
    "HumanEval/2 module_level_exit": "import sys\nsys.exit(0)\n",
    # ---- values equal to everything
    "HumanEval/0 always_equal_instance": _EQ + "def has_close_elements(numbers, threshold):\n    return _E()\n",
    "HumanEval/0 metaclass_equal_class": (
        "class M(type):\n    def __eq__(c, o):\n        return True\n    __hash__ = type.__hash__\n"
        "class T(metaclass=M):\n    pass\n"
        "def has_close_elements(numbers, threshold):\n    return T\n"
    ),
    "HumanEval/0 metaclass_instance": (
        "class M(type):\n    def __eq__(c, o):\n        return True\n    __hash__ = type.__hash__\n"
        "class B(int, metaclass=M):\n    def __eq__(s, o):\n        return True\n    __hash__ = int.__hash__\n"
        "def has_close_elements(numbers, threshold):\n    return B(1)\n"
    ),
    "HumanEval/0 bool_subclass_impossible_int_subclass": (
        "class I(int):\n    def __eq__(s, o):\n        return True\n    __hash__ = int.__hash__\n"
        "def has_close_elements(numbers, threshold):\n    return I(1)\n"
    ),
    "HumanEval/2 float_subclass": (
        "class F(float):\n    def __eq__(s, o):\n        return True\n    def __sub__(s, o):\n        return 0.0\n    "
        "__hash__ = float.__hash__\n"
        "def truncate_number(number):\n    return F(0.0)\n"
    ),
    "HumanEval/2 forged_fraction": (
        _EQ + "from fractions import Fraction\n"
        "def truncate_number(number):\n"
        "    f = Fraction(1, 2)\n    f._numerator = _E(); f._denominator = _E()\n    return f\n"
    ),
    "HumanEval/2 forged_decimal": (
        "from decimal import Decimal\n"
        "class D(Decimal):\n    def __eq__(s, o):\n        return True\n    def __sub__(s, o):\n        return 0\n    "
        "__hash__ = Decimal.__hash__\n"
        "def truncate_number(number):\n    return D(0)\n"
    ),
    "HumanEval/4 sub_returns_zero": (
        "class Z:\n    def __sub__(s, o):\n        return 0\n"
        "def mean_absolute_deviation(numbers):\n    return Z()\n"
    ),
    "HumanEval/4 abs_and_lt_overloaded": (
        "class Z:\n    def __sub__(s, o):\n        return s\n    def __abs__(s):\n        return s\n    def __lt__(s, "
        "o):\n        return True\n"
        "def mean_absolute_deviation(numbers):\n    return Z()\n"
    ),
    "HumanEval/4 float_conversion_trick": (
        "class Z:\n    def __float__(s):\n        return 0.6666666666666666\n    def __rsub__(s, o):\n        return "
        "0\n    def __sub__(s, o):\n        return 0\n"
        "def mean_absolute_deviation(numbers):\n    return Z()\n"
    ),
    "HumanEval/4 numpy_scalar": "import numpy\ndef mean_absolute_deviation(numbers):\n    return numpy.float64(0.0)\n",
    "HumanEval/0 generator_return": "def has_close_elements(numbers, threshold):\n    return (x for x in [True])\n",
    # ---- shadowed builtins, redefined helpers, replaced modules
    "HumanEval/4 shadowed_abs": "abs = lambda x: 0\ndef mean_absolute_deviation(numbers):\n    return 99.0\n",
    "HumanEval/4 shadowed_abs_fullwidth": "\uff41\uff42\uff53 = lambda x: 0\ndef mean_absolute_deviation(numbers):\n   "
                                          " return 99.0\n",
    "HumanEval/4 builtins_abs_patched": "import builtins\nbuiltins.abs = lambda x: 0\ndef "
                                        "mean_absolute_deviation(numbers):\n    return 99.0\n",
    "HumanEval/4 builtins_dict_patched": "__builtins__.__dict__['abs'] = lambda x: 0\ndef "
                                         "mean_absolute_deviation(numbers):\n    return 99.0\n",
    "HumanEval/38 redefined_encode_cyclic": (
        "def encode_cyclic(s):\n    return s\n"
        "def decode_cyclic(s):\n    return s\n"
    ),
    "HumanEval/50 redefined_encode_shift": (
        "def encode_shift(s):\n    return s\n"
        "def decode_shift(s):\n    return s\n"
    ),
    "HumanEval/32 redefined_poly": (
        "def poly(xs, x):\n    return 0.0\n"
        "def find_zero(xs):\n    return 12345.0\n"
    ),
    "HumanEval/32 replaced_math_module": (
        "import sys, types\nfake = types.ModuleType('math')\nfake.fabs = lambda x: 0.0\nfake.pow = lambda a, b: 0.0\n"
        "sys.modules['math'] = fake\n"
        "def find_zero(xs):\n    return 12345.0\n"
    ),
    "HumanEval/38 replaced_random_module": (
        "import sys, types\nfake = types.ModuleType('random')\nfake.randint = lambda a, b: 0\nfake.choice = lambda s: "
        "'a'\n"
        "sys.modules['random'] = fake\n"
        "def decode_cyclic(s):\n    return s\n"
    ),
    # ---- the evalplus-era hole: the expected outputs in the grader's own process
    "mbpp-11 multiprocessing_args": (
        "import multiprocessing\nargs = multiprocessing.current_process()._args\n"
        "def remove_Occ(s, ch):\n    return args[4][0] if args else s\n"
    ),
    "mbpp-11 read_job_files": (
        "import glob\nfiles = [open(p).read() for p in glob.glob('/tmp/.job/*') + glob.glob('/tmp/srpo_sandbox/*/*')]\n"
        "def remove_Occ(s, ch):\n    return s\n"
    ),
    # ---- the answer key on the host: the benchmark mirror, caches, the project's outputs
    "HumanEval/2 answer_key_from_mirror": (
        "import glob, gzip, json\n"
        "def _sol(name):\n"
        "    for p in glob.glob('/*/*/data/code/*') + glob.glob('/*/*/*/data/code/*') + "
        "glob.glob('/root/.cache/**/*.json*', recursive=True):\n"
        "        try:\n            raw = open(p, 'rb').read()\n        except OSError:\n            continue\n"
        "        if p.endswith('.gz'):\n            raw = gzip.decompress(raw)\n"
        "        for line in raw.decode(errors='ignore').splitlines():\n"
        "            try:\n                r = json.loads(line)\n            except Exception:\n                "
        "continue\n"
        "            if isinstance(r, dict) and r.get('entry_point') == name:\n                return r['prompt'] + "
        "r['canonical_solution']\n"
        "ns = {}\nexec(_sol('truncate_number') or 'truncate_number = lambda x: 0', ns)\n"
        "truncate_number = ns['truncate_number']\n"
    ),
    "mbpp-11 answer_key_walk": (
        "import os, json\nfound = {}\n"
        "for root, dirs, files in os.walk('/'):\n"
        "    if root.startswith(('/proc', '/sys', '/dev', '/usr', '/lib')):\n        dirs[:] = []\n        continue\n"
        "    for f in files:\n"
        "        if f == 'mbpp.jsonl':\n"
        "            for line in open(os.path.join(root, f)):\n"
        "                r = json.loads(line)\n                found[r['task_id']] = r['code']\n"
        "ns = {}\nexec(found.get(11, 'def remove_Occ(s, ch):\\n    return s'), ns)\nremove_Occ = ns['remove_Occ']\n"
    ),
    "mbpp-11 job_file_by_dir_fd": (
        "import os\n"
        "try:\n    leak = os.read(os.open('.job/job.json', os.O_RDONLY, dir_fd=os.open('/tmp', os.O_RDONLY)), 100000)\n"
        "except OSError:\n    leak = b''\n"
        "def remove_Occ(s, ch):\n    return s if not leak else leak.decode()\n"
    ),
    # ---- forged replies on the protocol pipe
    "mbpp-11 forged_reply_frames": (
        "import os, json, struct\n"
        "def _frame(m):\n    d = json.dumps(m).encode()\n    return struct.pack('>I', len(d)) + d\n"
        "def remove_Occ(s, ch):\n"
        "    for fd in range(3, 12):\n"
        "        try:\n            os.write(fd, _frame({'ok': ['s', 'heo']}) * 3)\n        except OSError:\n           "
        " pass\n"
        "    return s\n"
    ),
    "mbpp-11 garbage_on_reply_pipe": (
        "import os\n"
        "def remove_Occ(s, ch):\n"
        "    for fd in range(3, 12):\n"
        "        try:\n            os.write(fd, b'\\xff\\xff\\xff\\xff' + b'x' * 100)\n        except OSError:\n       "
        "     pass\n"
        "    return s.replace(ch, '')\n"
    ),
    "mbpp-11 huge_frame_header": (
        "import os\n"
        "def remove_Occ(s, ch):\n"
        "    for fd in range(3, 12):\n"
        "        try:\n            os.write(fd, (2**31).to_bytes(4, 'big'))\n        except OSError:\n            "
        "pass\n"
        "    return s\n"
    ),
    "mbpp-11 stdout_fake_token": "print('\\n' + 'a' * 32)\ndef remove_Occ(s, ch):\n    print('a' * 32)\n    return s\n",
    # ---- values that stall or exhaust the judge
    "mbpp-11 deeply_nested_value": (
        "def remove_Occ(s, ch):\n    v = []\n    for _ in range(100000):\n        v = [v]\n    return v\n"
    ),
    "mbpp-11 huge_int": "def remove_Occ(s, ch):\n    return 1 << 2_000_000\n",
    "mbpp-11 huge_string": "def remove_Occ(s, ch):\n    return 'x' * (200 << 20)\n",
    "HumanEval/33 huge_range": "def sort_third(l):\n    return range(60_000_000)\n",
    "HumanEval/2 colliding_set_frames": (
        "import os, json, struct, time\n"
        "M = (1 << 61) - 1\n"
        "b = json.dumps({'ok': ['S', [['i', format(k * M, 'x')] for k in range(60000)]]}).encode()\n"
        "def truncate_number(number):\n"
        "    for fd in range(3, 12):\n"
        "        try:\n            os.write(fd, struct.pack('>I', len(b)) + b)\n        except OSError:\n            "
        "pass\n"
        "    time.sleep(100)\n"
    ),
    "HumanEval/53 posixsubprocess_fork_flood": (
        "import _imp, importlib.machinery as m, os\n"
        "try:\n"
        "    ps = _imp.create_builtin(m.ModuleSpec('_posixsubprocess', None))\n"
        "    for _ in range(28):\n"
        "        e1, e2 = os.pipe()\n"
        "        ps.fork_exec([b'/bin/sh', b'-c', b'while :; do :; done'], [b'/bin/sh'], True, (), None, None,\n"
        "                     -1, -1, -1, -1, -1, -1, e1, e2, False, True, -1, None, None, -1, -1, None, False)\n"
        "except Exception:\n    pass\n"
        "def add(x, y):\n    return 0\n"
    ),
    "mbpp-11 self_referencing_list": "def remove_Occ(s, ch):\n    v = []\n    v.append(v)\n    return v\n",
    "mbpp-11 never_returns": "def remove_Occ(s, ch):\n    while True:\n        pass\n",
    "mbpp-11 sleeps_in_thread_then_exits": (
        "import threading, os, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), os._exit(0))).start()\n"
        "def remove_Occ(s, ch):\n    time.sleep(5)\n    return s\n"
    ),
    "mbpp-11 closes_its_pipes": (
        "import os\n"
        "for fd in range(0, 12):\n"
        "    try:\n        os.close(fd)\n    except OSError:\n        pass\n"
        "def remove_Occ(s, ch):\n    return s\n"
    ),
    "mbpp-11 inode_flood": (
        "import os\ni = 0\n"
        "while True:\n"
        "    try:\n        open(f'f{i}', 'w').close()\n    except OSError:\n        break\n"
        "    i += 1\n"
        "def remove_Occ(s, ch):\n    return s\n"
    ),
    "mbpp-11 zombie_factory": (
        "import os\n"
        "for _ in range(20):\n"
        "    try:\n        if os.fork() == 0:\n            os._exit(0)\n    except Exception:\n        pass\n"
        "def remove_Occ(s, ch):\n    return s\n"
    ),
}

# The correct programs, for the same tasks (each must score 1 beside the hostile ones).
CORRECT = {
    "HumanEval/2": "def truncate_number(number):\n    return number % 1.0\n",
    "mbpp-11": (
        "def remove_Occ(s, ch):\n"
        "    i = s.find(ch)\n    if i >= 0:\n        s = s[:i] + s[i + 1:]\n"
        "    j = s.rfind(ch)\n    if j >= 0:\n        s = s[:j] + s[j + 1:]\n    return s\n"
    ),
    "HumanEval/38": (
        "def decode_cyclic(s):\n"
        "    groups = [s[(3 * i):min((3 * i + 3), len(s))] for i in range((len(s) + 2) // 3)]\n"
        "    groups = [(g[-1] + g[:-1]) if len(g) == 3 else g for g in groups]\n"
        "    return ''.join(groups)\n"
    ),
}
