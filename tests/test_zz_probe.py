import asyncio, os, pickle, threading, pytest
from tests.test_read_trust import _forge
from envstore.errors import EnvstoreError

def reads(fs, p):
    out = {}
    for ct in ("none","all","readahead","blockcache","bytes","first","mmap","background","parts"):
        out["open-"+ct] = lambda ct=ct: fs.open(p, "rb", cache_type=ct).read()
    out["read_block"] = lambda: fs.read_block(p, 0, 10)
    out["read_block_delim"] = lambda: fs.read_block(p, 0, 10, delimiter=b"\n")
    out["head"] = lambda: fs.head(p)
    out["tail"] = lambda: fs.tail(p)
    out["cat"] = lambda: fs.cat(p)
    out["cat_list"] = lambda: fs.cat([p])
    out["read_text"] = lambda: fs.read_text(p)
    out["cat_file_0_0"] = lambda: fs.cat_file(p, 0, 0)
    out["cat_file_start_big"] = lambda: fs.cat_file(p, 10)
    out["cat_ranges_neg"] = lambda: fs.cat_ranges([p], [-5], [None], on_error="raise")
    out["cat_ranges_rev"] = lambda: fs.cat_ranges([p], [5], [2], on_error="raise")
    out["cat_ranges_none"] = lambda: fs.cat_ranges([p], [None], [None], on_error="raise")
    out["text_iter"] = lambda: list(fs.open(p, "r"))
    out["text_read"] = lambda: fs.open(p, "rt").read()
    out["seek_end_read"] = lambda: (lambda f: (f.seek(0, 2), f.read()))(fs.open(p))
    out["seek_past"] = lambda: (lambda f: (f.seek(100), f.read()))(fs.open(p))
    out["pickle_handle"] = lambda: pickle.loads(pickle.dumps(fs.open(p))).read()
    out["readinto_empty"] = lambda: fs.open(p).readinto(bytearray(0))
    out["readuntil"] = lambda: fs.open(p).readuntil(b"\n")
    out["read1"] = lambda: fs.open(p).read1(10) if hasattr(fs.open(p), "read1") else "noread1"
    def aw():
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
        a = AsyncFileSystemWrapper(fs)
        return asyncio.run(a._cat_file(p))
    out["asyncwrap_cat"] = aw
    def aw2():
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
        a = AsyncFileSystemWrapper(fs)
        return asyncio.run(a._cat_ranges([p], [0], [10]))
    out["asyncwrap_ranges"] = aw2
    def thr():
        f = fs.open(p); res = []
        t = threading.Thread(target=lambda: res.append(f.read())); t.start(); t.join()
        return res[0] if res else "thread-raised"
    out["thread"] = thr
    out["iter_bytes"] = lambda: list(fs.open(p))
    return out

@pytest.mark.parametrize("how", ["cut-to-empty", "flipped-tag", "forged-no-recipient", "forged-planted"])
def test_probe(efs, how, other_key_uri):
    fs, root = efs
    p = f"{root}/obj"
    _forge(fs, p, how, other_key_uri)
    bad = []
    for n, c in reads(fs, p).items():
        fs.invalidate_cache()
        try:
            r = c()
            bad.append((n, repr(r)[:60]))
        except EnvstoreError:
            pass
        except Exception as e:
            bad.append((n, "EXC " + type(e).__name__ + str(e)[:60]))
    print(how, bad)
