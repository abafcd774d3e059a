#!/usr/bin/env python3
"""Structurally compare /work/main/src/qapi/schema.json against a QEMU 10.0.2
query-qmp-schema dump (/tmp/q10-introspection.json).

Both sides are resolved into a canonical, name-free form, the way QAPI
introspection presents them:
  builtin   -> ("builtin", json-ish name)    (all int widths / size -> "int")
  enum      -> ("enum", [(value, sorted features)...])
  array     -> ("array", element)
  object    -> ("object", [(name, optional, features, type)...], tag, {case: obj})
  alternate -> ("alternate", sorted member types)
Commands: args object, return type, allow-oob, features.  Events: args, features.
Also checks our schema for internal consistency (all referenced types defined,
valid builtins, discriminators, unique names, doc strings, no 'if').
"""
import json, sys

SCHEMA = sys.argv[1] if len(sys.argv) > 1 else "/work/main/src/qapi/schema.json"
INTRO = sys.argv[2] if len(sys.argv) > 2 else "/tmp/q10-introspection.json"

WANT_CMDS = ("migrate migrate-incoming migrate_cancel migrate-continue migrate-pause "
             "migrate-recover migrate-start-postcopy migrate-set-capabilities "
             "query-migrate-capabilities migrate-set-parameters query-migrate-parameters "
             "query-migrate qmp_capabilities query-version query-commands query-qmp-schema "
             "query-status stop cont quit human-monitor-command getfd closefd add-fd "
             "pmemsave").split()
WANT_EVENTS = "MIGRATION MIGRATION_PASS STOP RESUME".split()
WANT_TYPES = ("MigrationAddress MigrationAddressType SocketAddress SocketAddressType "
              "InetSocketAddressBase InetSocketAddress UnixSocketAddress VsockSocketAddress "
              "String MigrationExecCommand FileMigrationArgs MigrationChannel "
              "MigrationChannelType MigrationCapability MigrationCapabilityStatus "
              "MigrationParameters MigrateSetParameters StrOrNull MultiFDCompression "
              "ZeroPageDetection MigMode BitmapMigrationNodeAlias BitmapMigrationBitmapAlias "
              "BitmapMigrationBitmapAliasTransform MigrationInfo MigrationStats "
              "XBZRLECacheStats VfioStats MigrationStatus RunState StatusInfo VersionInfo "
              "VersionTriple CommandInfo QMPCapability AddfdInfo SchemaInfo SchemaMetaType "
              "SchemaInfoBuiltin JSONType SchemaInfoEnum SchemaInfoEnumMember SchemaInfoArray "
              "SchemaInfoObject SchemaInfoObjectMember SchemaInfoObjectVariant "
              "SchemaInfoAlternate SchemaInfoAlternateMember SchemaInfoCommand "
              "SchemaInfoEvent").split()

BUILTIN = {"str": "str", "number": "number", "bool": "bool", "null": "null", "any": "any",
           "int": "int", "int8": "int", "int16": "int", "int32": "int", "int64": "int",
           "uint8": "int", "uint16": "int", "uint32": "int", "uint64": "int", "size": "int"}
META_KEYS = ("enum", "struct", "union", "alternate", "command", "event")
ALLOWED_KEYS = {
    "enum": {"enum", "data", "doc", "features", "prefix"},
    "struct": {"struct", "data", "base", "doc", "features"},
    "union": {"union", "base", "discriminator", "data", "doc", "features"},
    "alternate": {"alternate", "data", "doc", "features"},
    "command": {"command", "data", "returns", "boxed", "allow-oob", "allow-preconfig",
                "features", "doc", "success-response", "coroutine"},
    "event": {"event", "data", "boxed", "doc", "features"},
}

errors = []
def err(msg):
    errors.append(msg)

# ---------------------------------------------------------------- our schema
def load_ours(path):
    exprs = json.load(open(path))
    if not isinstance(exprs, list):
        sys.exit("schema.json must be a JSON array")
    defs, ents = {}, {}
    for e in exprs:
        metas = [k for k in META_KEYS if k in e]
        if len(metas) != 1:
            err("expression with ambiguous/unknown meta: %r" % e)
            continue
        meta = metas[0]
        name = e[meta]
        extra = set(e) - ALLOWED_KEYS[meta]
        if extra:
            err("%s %s: unexpected keys %s" % (meta, name, sorted(extra)))
        if not isinstance(e.get("doc"), str) or not e["doc"].strip():
            err("%s %s: missing doc" % (meta, name))
        table = ents if meta in ("command", "event") else defs
        if name in table or name in BUILTIN:
            err("duplicate/reserved name %s" % name)
        table[name] = (meta, e)
    return exprs, defs, ents

def member_spec(key, val):
    opt = key.startswith("*")
    name = key[1:] if opt else key
    feats = []
    if isinstance(val, dict):
        feats = val.get("features", [])
        bad = set(val) - {"type", "features"}
        if bad:
            err("member %s: unexpected keys %s" % (name, sorted(bad)))
        val = val["type"]
    return name, opt, sorted(feats), val

class Ours:
    def __init__(self, defs):
        self.defs = defs
        self.memo = {}

    def typeref(self, t, ctx):
        if isinstance(t, list):
            if len(t) != 1:
                err("%s: array type must have one element: %r" % (ctx, t))
                return ("error",)
            return ("array", self.typeref(t[0], ctx))
        if not isinstance(t, str):
            err("%s: bad type reference %r" % (ctx, t))
            return ("error",)
        if t in BUILTIN:
            return ("builtin", BUILTIN[t])
        if t not in self.defs:
            err("%s: undefined type %s" % (ctx, t))
            return ("error",)
        return ("ref", t)

    def members_of(self, data, ctx):
        """Members of a struct-like 'data' (dict or struct name)."""
        if data is None:
            return []
        if isinstance(data, str):
            if data not in self.defs or self.defs[data][0] not in ("struct", "union"):
                err("%s: data must name a struct/union, got %s" % (ctx, data))
                return []
            return self.object_members(data)
        out = []
        for k, v in data.items():
            n, opt, feats, t = member_spec(k, v)
            out.append((n, opt, feats, self.typeref(t, "%s.%s" % (ctx, n))))
        return out

    def object_members(self, name):
        meta, e = self.defs[name]
        base = e.get("base")
        mem = []
        if base is not None:
            if isinstance(base, str):
                if base not in self.defs or self.defs[base][0] != "struct":
                    err("%s: base %s must be a struct" % (name, base))
                else:
                    mem += self.object_members(base)
            else:
                mem += self.members_of(base, name)
        if meta == "struct":
            mem += self.members_of(e.get("data", {}), name)
        return mem

    def args_of(self, e, ctx):
        data = e.get("data")
        if isinstance(data, str) and not e.get("boxed") and self.defs.get(data, ("",))[0] == "union":
            err("%s: union argument type requires boxed" % ctx)
        if e.get("boxed") and not isinstance(data, str):
            err("%s: boxed requires a type name" % ctx)
        return self.members_of(data, ctx)

def canon_ours(o, t, seen):
    kind = t[0]
    if kind == "builtin":
        return t
    if kind == "error":
        return t
    if kind == "array":
        return ("array", canon_ours(o, t[1], seen))
    name = t[1]
    if name in seen:
        return ("recursive", name)
    seen = seen | {name}
    meta, e = o.defs[name]
    if meta == "enum":
        vals = []
        for v in e.get("data", []):
            if isinstance(v, dict):
                vals.append((v["name"], tuple(sorted(v.get("features", [])))))
            else:
                vals.append((v, ()))
        return ("enum", tuple(vals))
    if meta == "alternate":
        return ("alternate", tuple(sorted(json.dumps(canon_ours(o, o.typeref(v, name), seen))
                                          for v in e["data"].values())))
    mem = o.object_members(name)
    members = tuple((n, opt, tuple(f), canon_ours(o, ty, seen)) for n, opt, f, ty in mem)
    tag, variants = None, ()
    if meta == "union":
        tag = e.get("discriminator")
        names = [m[0] for m in mem]
        if tag not in names:
            err("union %s: discriminator %s not a base member" % (name, tag))
        else:
            tty = [m for m in mem if m[0] == tag][0]
            if tty[1] or tty[3][0] != "ref" or o.defs[tty[3][1]][0] != "enum":
                err("union %s: discriminator must be a mandatory enum member" % name)
            else:
                vals = [v["name"] if isinstance(v, dict) else v
                        for v in o.defs[tty[3][1]][1]["data"]]
                for c in e["data"]:
                    if c not in vals:
                        err("union %s: case %s not in enum" % (name, c))
        vs = []
        for c, vt in e["data"].items():
            if not isinstance(vt, str) or vt not in o.defs or o.defs[vt][0] not in ("struct", "union"):
                err("union %s: variant %s must name an object type" % (name, c))
                continue
            vs.append((c, canon_ours(o, ("ref", vt), seen)))
        variants = tuple(sorted(vs))
    return ("object", members, tag, variants)

# ---------------------------------------------------------------- introspection
class Intro:
    def __init__(self, path):
        self.t = {x["name"]: x for x in json.load(open(path))}

def canon_intro(I, name, seen):
    x = I.t[name]
    mt = x["meta-type"]
    if mt == "builtin":
        return ("builtin", name)
    if mt == "array":
        return ("array", canon_intro(I, x["element-type"], seen))
    if name in seen:
        return ("recursive", name)
    seen = seen | {name}
    if mt == "enum":
        if "members" in x:
            return ("enum", tuple((m["name"], tuple(sorted(m.get("features", []))))
                                  for m in x["members"]))
        return ("enum", tuple((v, ()) for v in x["values"]))
    if mt == "alternate":
        return ("alternate", tuple(sorted(json.dumps(canon_intro(I, m["type"], seen))
                                          for m in x["members"])))
    members = tuple((m["name"], "default" in m, tuple(sorted(m.get("features", []))),
                     canon_intro(I, m["type"], seen)) for m in x["members"])
    tag = x.get("tag")
    variants = tuple(sorted((v["case"], canon_intro(I, v["type"], seen))
                            for v in x.get("variants", [])))
    return ("object", members, tag, variants)

# ---------------------------------------------------------------- diff
def diff(a, b, path):
    """a = ours, b = 10.0"""
    if a[0] != b[0]:
        err("%s: kind differs: ours=%s 10.0=%s" % (path, short(a), short(b)))
        return
    k = a[0]
    if k == "builtin":
        if a[1] != b[1]:
            err("%s: builtin differs: ours=%s 10.0=%s" % (path, a[1], b[1]))
    elif k == "array":
        diff(a[1], b[1], path + "[]")
    elif k == "enum":
        if a[1] != b[1]:
            err("%s: enum differs:\n    ours=%s\n    10.0=%s" % (path, list(a[1]), list(b[1])))
    elif k == "alternate":
        if a[1] != b[1]:
            err("%s: alternate members differ: ours=%s 10.0=%s" % (path, a[1], b[1]))
    elif k == "recursive":
        pass
    elif k == "object":
        an = [m[0] for m in a[1]]
        bn = [m[0] for m in b[1]]
        if an != bn:
            err("%s: member names/order differ:\n    ours=%s\n    10.0=%s" % (path, an, bn))
        bm = {m[0]: m for m in b[1]}
        for m in a[1]:
            if m[0] not in bm:
                continue
            o = bm[m[0]]
            if m[1] != o[1]:
                err("%s.%s: optional ours=%s 10.0=%s" % (path, m[0], m[1], o[1]))
            if m[2] != o[2]:
                err("%s.%s: features ours=%s 10.0=%s" % (path, m[0], m[2], o[2]))
            diff(m[3], o[3], "%s.%s" % (path, m[0]))
        if a[2] != b[2]:
            err("%s: tag ours=%s 10.0=%s" % (path, a[2], b[2]))
        ac = [v[0] for v in a[3]]
        bc = [v[0] for v in b[3]]
        if ac != bc:
            err("%s: variant cases ours=%s 10.0=%s" % (path, ac, bc))
        bv = dict(b[3])
        for c, vt in a[3]:
            if c in bv:
                diff(vt, bv[c], "%s{%s}" % (path, c))
    else:
        err("%s: unresolvable (%s)" % (path, k))

def short(t):
    s = json.dumps(t)
    return s if len(s) < 120 else s[:117] + "..."

EMPTY = ("object", (), None, ())

def main():
    exprs, defs, ents = load_ours(SCHEMA)
    o = Ours(defs)
    I = Intro(INTRO)

    for e in exprs:                      # 'if' anywhere is forbidden
        if '"if"' in json.dumps(e):
            err("%s: contains an 'if' key" % json.dumps(e)[:60])

    for n in WANT_TYPES:
        if n not in defs:
            err("missing required type %s" % n)

    # resolve every definition once (reports undefined references etc.)
    for n in defs:
        canon_ours(o, ("ref", n), frozenset())

    for name in WANT_CMDS + WANT_EVENTS:
        is_cmd = name in WANT_CMDS
        meta = "command" if is_cmd else "event"
        if name not in ents or ents[name][0] != meta:
            err("missing %s %s" % (meta, name))
            continue
        if name not in I.t or I.t[name]["meta-type"] != meta:
            err("10.0 has no %s %s" % (meta, name))
            continue
        e = ents[name][1]
        x = I.t[name]
        ours_args = ("object", tuple((n, opt, tuple(f), canon_ours(o, ty, frozenset()))
                                     for n, opt, f, ty in o.args_of(e, name)), None, ())
        if isinstance(e.get("data"), str):      # boxed/named: use the full object type
            ours_args = canon_ours(o, ("ref", e["data"]), frozenset())
        diff(ours_args, canon_intro(I, x["arg-type"], frozenset()), name + "(args)")
        if sorted(e.get("features", [])) != sorted(x.get("features", [])):
            err("%s: features ours=%s 10.0=%s" % (name, e.get("features", []),
                                                  x.get("features", [])))
        if is_cmd:
            r = e.get("returns")
            ours_ret = EMPTY if r is None else canon_ours(o, o.typeref(r, name + "(ret)"), frozenset())
            diff(ours_ret, canon_intro(I, x["ret-type"], frozenset()), name + "(ret)")
            if bool(e.get("allow-oob", False)) != bool(x.get("allow-oob", False)):
                err("%s: allow-oob ours=%s 10.0=%s" % (name, e.get("allow-oob"), x.get("allow-oob")))

    # unused definitions (informational)
    used = set()
    def walk(v):
        if isinstance(v, str):
            if v in defs: used.add(v)
        elif isinstance(v, list):
            for i in v: walk(i)
        elif isinstance(v, dict):
            for k, i in v.items():
                if k in ("doc", "features"): continue
                walk(i)
    for e in exprs:
        for k in ("data", "base", "returns"):
            if k in e:
                walk(e[k])
    unused = sorted(set(defs) - used)

    # integer widths (cannot be checked against introspection): list them
    widths = []
    for n, (meta, e) in defs.items():
        if meta in ("struct",) or (meta == "union" and isinstance(e.get("base"), dict)):
            d = e.get("data", {}) if meta == "struct" else e.get("base", {})
            for k, v in d.items():
                t = v["type"] if isinstance(v, dict) else v
                if isinstance(t, list): t = "[%s]" % t[0]
                if t.strip("[]") in BUILTIN and BUILTIN[t.strip("[]")] == "int" and t.strip("[]") != "int":
                    widths.append("%s.%s: %s" % (n, k.lstrip("*"), t))
    for n, (meta, e) in ents.items():
        if isinstance(e.get("data"), dict):
            for k, v in e["data"].items():
                t = v["type"] if isinstance(v, dict) else v
                if isinstance(t, str) and t in BUILTIN and BUILTIN[t] == "int" and t != "int":
                    widths.append("%s.%s: %s" % (n, k.lstrip("*"), t))

    print("expressions: %d (types %d, commands/events %d)" % (len(exprs), len(defs), len(ents)))
    if unused:
        print("unreferenced types (informational):", ", ".join(unused))
    print("non-'int' integer widths (from QEMU .json sources, not checkable via introspection):")
    for w in sorted(widths):
        print("   ", w)
    if errors:
        print("\n%d DIFFERENCE(S)/ERROR(S):" % len(errors))
        for m in errors:
            print(" -", m)
        sys.exit(1)
    print("\nOK: 0 differences against QEMU 10.0.2 introspection")

main()
