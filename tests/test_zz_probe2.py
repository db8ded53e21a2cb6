import os, random, pytest
from envstore.format import CHUNK

def ref(data, s, e):
    n = len(data)
    s = 0 if s is None else (max(0, n + s) if s < 0 else s)
    e = n if e is None else (max(0, n + e) if e < 0 else min(e, n))
    return data[s:e] if s < e else b""

def test_ranges(efs):
    fs, root = efs
    rnd = random.Random(1)
    objs = {}
    for i, n in enumerate([0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]):
        p = f"{root}/o{i}"; d = os.urandom(n); fs.pipe_file(p, d); objs[p] = d
    bad = []
    for trial in range(300):
        k = rnd.randint(1, 8)
        paths = [rnd.choice(list(objs)) for _ in range(k)]
        def pos():
            return rnd.choice([None, rnd.randint(-4*CHUNK, 4*CHUNK), 0, -1, CHUNK, CHUNK-1])
        starts = [pos() for _ in range(k)]; ends = [pos() for _ in range(k)]
        got = fs.cat_ranges(paths, starts, ends, on_error="return")
        for p, s, e, g in zip(paths, starts, ends, got):
            exp = ref(objs[p], s, e)
            if g != exp:
                bad.append((len(objs[p]), s, e, type(g).__name__, len(g) if isinstance(g, bytes) else str(g)[:80], len(exp)))
        for p, s, e in zip(paths, starts, ends):
            try:
                g = fs.cat_file(p, s, e)
            except Exception as exc:
                g = exc
            if g != ref(objs[p], s, e):
                bad.append(("cat_file", len(objs[p]), s, e, str(g)[:80]))
    print(bad[:20], len(bad))
    assert not bad
