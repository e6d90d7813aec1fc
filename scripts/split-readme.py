#!/usr/bin/env python3
"""Split README.md (issue 17; run from the repository root on an UNSPLIT README: python3 scripts/split-readme.py)

Keeps the README the path in and moves reference sections to docs/<file>.md (text moved, not rewritten).

Rules (by H2 heading, outside code fences):
  KEEP       : stays whole in README.
  MOVE[h]=f  : whole section goes to docs/f; README keeps the heading, the section's first
               paragraph, and a link line.
  BENCH      : whole section to docs/benchmark.md; README keeps the first code block, the
               paragraph before the first table, the table, the paragraph after it, and a link.
  PARTS      : README keeps a selection (the ciphertext layout before the first bold lead-in;
               the architecture picture and two bullets); the whole section goes to docs/.
  H3_MOVE    : subsections of a kept section that move (all of "Using it …": docs/operations.md).
  unknown H2 : moved like MOVE to docs/<slug>.md if longer than 30 lines, else kept.
  Links are rewritten for their new place; "## Where to read on" is generated.
"""
import re, sys, os

KEEP = {'Quick start', 'Using it from the AWS CLI and SDKs', 'Configuration', 'Ciphertext format',
        'Architecture in brief', 'Where to read on'}
MOVE = {
    'Principals, policies and grants': 'authorization.md',
    'TLS': 'tls.md',
    'XKS proxy (AWS KMS external key store)': 'xks-proxy.md',
    'Custom key stores': 'custom-key-stores.md',
    'Asymmetric and HMAC keys': 'asymmetric-and-hmac.md',
    'Key lifecycle': 'key-lifecycle.md',
    'Audit trail': 'audit.md',
    'Metrics and logs': 'metrics-and-logs.md',
    'Tests': 'tests.md',
}
BENCH = 'Benchmark'
# Inside kept sections: H3 subsections that move (section -> (H3s kept, docs file for the rest)).
H3_MOVE = {
    'Using it from the AWS CLI and SDKs': (set(), 'operations.md'),
}

def keep_until_bold(bl):
    out = []
    for b in bl:
        if b[0].startswith('**'): break
        out.append(b)
    return out

ARCH_BULLETS = ('- **The transport knows nothing', '- **Layers as rules')
def keep_arch(bl):
    out, code = [], False
    for b in bl:
        if b[0].startswith('```') and not code:
            out.append(b); code = True; continue
        if b[0].startswith('- **'):
            items, cur = [], []
            for l in b:
                if l.startswith('- ') and cur: items.append(cur); cur = []
                cur.append(l)
            if cur: items.append(cur)
            kept = [l for it in items if it[0].startswith(ARCH_BULLETS) for l in it]
            if kept: out.append(kept)
        if b[0].startswith('#'): break
    return out

# Kept in part: README keeps what keep() selects; the whole section goes to docs/<file>.
PARTS = {
    'Ciphertext format': ('ciphertext-format.md', keep_until_bold),
    'Architecture in brief': ('architecture.md', keep_arch),
}
def parts_of(h):
    for k, v in PARTS.items():
        if h and h.startswith(k): return v
    return None

def slug(h):  # GitHub anchor
    s = h.strip().lower()
    s = re.sub(r'[^\w\- ]', '', s)
    return s.replace(' ', '-')

def sections(lines):
    """[(heading or None, [lines])] split at H2 outside fences."""
    out, cur, head, fence = [], [], None, False
    for l in lines:
        if l.startswith('```'):
            fence = not fence
        if not fence and l.startswith('## '):
            out.append((head, cur)); cur, head = [], l[3:].strip()
        cur.append(l)
    out.append((head, cur))
    return out

def headings_in(sec_lines):
    fence, hs = False, []
    for l in sec_lines:
        if l.startswith('```'): fence = not fence
        elif not fence and re.match(r'#{2,6} ', l): hs.append(slug(l.lstrip('#').strip()))
    return hs

def blocks(body):
    """paragraph/code/table blocks of a section body (after the heading line)."""
    out, cur, fence = [], [], False
    for l in body:
        if l.startswith('```'):
            fence = not fence
            cur.append(l)
            if not fence: out.append(cur); cur = []
            continue
        if not fence and l.strip() == '':
            if cur: out.append(cur); cur = []
            continue
        cur.append(l)
    if cur: out.append(cur)
    return out

def first_paragraph(body):
    bl = blocks(body)
    for i, b in enumerate(bl):
        if not b[0].startswith('```') and not b[0].startswith('|') and not b[0].startswith('#'):
            # A lead-in that ends with ':' keeps the short list it introduces.
            if b[-1].rstrip().endswith(':') and i + 1 < len(bl) and bl[i+1][0].startswith(('- ', '* ', '1. ')) and len(bl[i+1]) <= 12:
                return b + [''] + bl[i+1]
            return b
    return []

def main(readme='README.md', docs='docs'):
    lines = open(readme).read().split('\n')
    if any(l.startswith('Details: [docs/') for l in lines):
        sys.exit('README is already split (it links "Details: [docs/…"): run this on the unsplit README, '
                 'e.g. after `git checkout <main> -- README.md` in a merge, never twice.')
    secs = sections(lines)
    target = {}
    for h, body in secs:
        if h is None or (h in KEEP and not parts_of(h)): continue
        if parts_of(h): target[h] = parts_of(h)[0]
        elif h in MOVE: target[h] = MOVE[h]
        elif h == BENCH: target[h] = 'benchmark.md'
        elif len(body) > 30: target[h] = slug(h) + '.md'
    # where each anchor lives after the split
    anchor_file = {}
    for h, body in secs:
        for a in headings_in(body):
            anchor_file.setdefault(a, target.get(h))
    readme_anchors = {slug(h) for h, _ in secs if h}  # H2s stay (as headings) in README

    def fix_links(text, here):
        def rep(m):
            label, url = m.group(1), m.group(2)
            if re.match(r'[a-z]+:', url): return m.group(0)
            if url.startswith('#'):
                a = url[1:]
                f = anchor_file.get(a)
                if f == here: return m.group(0)
                if here is None:  # in README
                    if f is None or a in readme_anchors: return m.group(0)
                    return f'[{label}](docs/{f}#{a})'
                if f is None or (a in readme_anchors and f != here and f is None): return f'[{label}](../README.md#{a})'
                return f'[{label}]({f}#{a})'
            if here is not None and url.startswith('docs/'):
                return f'[{label}]({url[5:]})'
            if here is not None and not url.startswith('../'):
                return f'[{label}](../{url})'
            return m.group(0)
        return re.sub(r'\[([^\]]*)\]\(([^)\s]+)\)', rep, text)

    os.makedirs(docs, exist_ok=True)
    # H3 moves inside kept sections: split those sections first.
    h3docs = {}
    nsecs = []
    for h, body in secs:
        if h in H3_MOVE and h not in target:
            keep_h3, f = H3_MOVE[h]
            kept, moved, fence, cur_moving = [], [], False, False
            for l in body:
                if l.startswith('```'): fence = not fence
                if not fence and l.startswith('### '):
                    cur_moving = l[4:].strip() not in keep_h3
                    if cur_moving:
                        moved.append('## ' + l[4:].strip())
                        h3docs.setdefault(f, []).append(l[4:].strip())
                        continue
                (moved if cur_moving else kept).append(l)
            if moved:
                subs = ', '.join(h3docs[f])
                while kept and kept[-1] == '': kept.pop()
                kept += ['', f'More: [docs/{f}](docs/{f}) ({subs}).', '']
                for a in headings_in(moved):
                    anchor_file[a] = f
                text = '\n'.join(['# ' + h, '', '<!-- Moved from README.md (issue 17): subsections of "' + h + '". -->', ''] + moved).rstrip('\n') + '\n'
                open(os.path.join(docs, f), 'w').write(fix_links(text, f))
            nsecs.append((h, kept))
        else:
            nsecs.append((h, body))
    secs = nsecs
    new = []
    for h, body in secs:
        if h is None or h not in target:
            new.extend(body); continue
        f = target[h]
        text = '\n'.join(['# ' + h] + body[1:]).rstrip('\n') + '\n'
        # Sub-headings move up one level in their own file.
        out, fence = [], False
        for l in text.split('\n'):
            if l.startswith('```'): fence = not fence
            if not fence and re.match(r'#{3,6} ', l): l = l[1:]
            out.append(l)
        text = '\n'.join(out)
        text = text.replace('# ' + h, '# ' + h + '\n\n<!-- Moved from README.md (issue 17); the README keeps a summary and links here. -->', 1)
        open(os.path.join(docs, f), 'w').write(fix_links(text, f))
        keep = [body[0], '']
        bl = blocks(body[1:])
        if parts_of(h):
            for b in parts_of(h)[1](bl): keep += b + ['']
            keep += [f'More: [docs/{f}](docs/{f}).', '']
        elif h == BENCH:
            code = next((b for b in bl if b[0].startswith('```')), None)
            ti = next((i for i, b in enumerate(bl) if b[0].startswith('|')), None)
            if code: keep += code + ['']
            if ti is not None:
                if ti > 0 and not bl[ti-1][0].startswith(('```', '|', '#')): keep += bl[ti-1] + ['']
                keep += bl[ti] + ['']
                if ti + 1 < len(bl) and not bl[ti+1][0].startswith(('```', '|', '#')): keep += bl[ti+1] + ['']
            keep += [f'Method, conditions, targets and what was profiled: [docs/{f}](docs/{f}).', '']
        else:
            p = first_paragraph(body[1:])
            if p: keep += p + ['']
            keep += [f'Details: [docs/{f}](docs/{f}).', '']
        new.extend(keep)
    # "Where to read on": one line per docs file, generated from the split (replaces an older one).
    text = '\n'.join(new)
    text = re.sub(r'\n## Where to read on\n.*?(?=\n## |\Z)', '\n', text, flags=re.S)
    index = ['## Where to read on', '']
    for h, f in target.items():
        index.append(f'- [docs/{f}](docs/{f}): {h}')
    for f, subs in h3docs.items():
        index.append(f'- [docs/{f}](docs/{f}): {", ".join(subs)}')
    listed = set(target.values()) | set(h3docs)
    for f in sorted(os.listdir(docs)):
        if f.endswith('.md') and f not in listed:
            first = open(os.path.join(docs, f)).readline().lstrip('# ').strip()
            index.append(f'- [docs/{f}](docs/{f}): {first}')
    if os.path.exists('native-config/README.md'):
        index.append('- [native-config/README.md](native-config/README.md): the token profiles per vendor')
    text = text.rstrip('\n') + '\n\n' + '\n'.join(index) + '\n'
    out = fix_links(text, None)
    out = re.sub(r'\n{3,}', '\n\n', out)
    open(readme, 'w').write(out)
    for h, f in target.items(): print(f'{h!r:45} -> docs/{f}')
    print('README lines:', out.count('\n'))

if __name__ == '__main__':
    main(*sys.argv[1:])
