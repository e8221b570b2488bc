"""The spanning-tree basis of the network simplex (:mod:`matching.flow.simplex`), compiled with numba.

A basis is a spanning tree over the network's nodes and an artificial root, kept as LEMON's
``NetworkSimplex`` keeps it: per node its parent, the arc to its parent and that arc's direction,
a preorder *thread* (and its reverse), its subtree's size and last node in the thread. A pivot then
costs the length of its cycle plus the size of the subtree it moves.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

#: The basis's arrays: node numbers of arcs (``source``, ``target``) are int32, arc states int8,
#: everything else (tree links, flows, capacities, costs, potentials) int64.
Int32Array = NDArray[np.int32]
Int8Array = NDArray[np.int8]
Int64Array = NDArray[np.int64]

#: Capacity of an arc whose flow is bounded by other arcs (never the binding constraint).
UNBOUNDED = 1 << 60
LOWER, TREE, UPPER = 1, 0, -1  # arc states: at zero, in the tree, at capacity
UP, DOWN = 1, -1  # a tree node's arc to its parent points towards the parent (up) or away (down)


@njit(cache=True, nogil=True)
def initial_tree(
    n: int,
    source: Int32Array,
    target: Int32Array,
    cap: Int64Array,
    cost: Int64Array,
    supply: Int64Array,
    art: int,
    parent: Int64Array,
    pred: Int64Array,
    thread: Int64Array,
    rev_thread: Int64Array,
    succ_num: Int64Array,
    last_succ: Int64Array,
    pred_dir: Int64Array,
    pi: Int64Array,
    flow: Int64Array,
    state: Int8Array,
    by_paths: bool,
) -> None:
    """The first strongly feasible tree: a shortest-path tree into the largest demand node (when
    ``by_paths``), every other node hung from an artificial root by an artificial arc that carries
    its supply (cost 0 out of a sender, ``art`` into a receiver)."""
    m = len(source) - n
    root = n
    for e in range(m):
        state[e] = LOWER
        flow[e] = 0
    into = shortest_path_tree(n, m, source, target, cap, cost, supply) if by_paths else np.full(n, -1, np.int64)
    parent[root] = -1
    pred[root] = -1
    for u in range(n):
        e = m + u
        cap[e] = UNBOUNDED
        if into[u] >= 0:  # hangs from the tree by a real arc carrying nothing yet
            a = into[u]
            parent[u], pred[u], pred_dir[u], state[a] = target[a], a, UP, TREE
            source[e], target[e], flow[e], cost[e], state[e] = u, root, 0, art, LOWER
        elif supply[u] >= 0:
            parent[u], pred[u], pred_dir[u], state[e] = root, e, UP, TREE
            source[e], target[e], flow[e], cost[e] = u, root, supply[u], 0
        else:
            parent[u], pred[u], pred_dir[u], state[e] = root, e, DOWN, TREE
            source[e], target[e], flow[e], cost[e] = root, u, -supply[u], art
    thread_tree(n, parent, thread, rev_thread, succ_num, last_succ)
    potentials(n, cost, parent, pred, thread, pred_dir, pi)


@njit(cache=True, nogil=True)
def shortest_path_tree(
    n: int,
    m: int,
    source: Int32Array,
    target: Int32Array,
    cap: Int64Array,
    cost: Int64Array,
    supply: Int64Array,
) -> Int64Array:
    """Per node, its arc on a cheapest path into the largest demand node (-1: unreached, or a node
    with a supply of its own, which hangs from the root instead)."""
    sink = 0
    for u in range(n):
        if supply[u] < supply[sink]:
            sink = u
    start, incoming = grouped(target[:m], n)
    dist = np.full(n, UNBOUNDED, np.int64)
    into = np.full(n, -1, np.int64)
    done = np.zeros(n, np.bool_)
    heap_key = np.empty(m + 1, np.int64)
    heap_node = np.empty(m + 1, np.int64)
    dist[sink], heap_key[0], heap_node[0], size = 0, 0, sink, 1
    while size:
        d, v = heap_key[0], heap_node[0]
        size = heap_pop(heap_key, heap_node, size)
        if done[v]:
            continue
        done[v] = True
        for k in range(start[v], start[v + 1]):
            e = incoming[k]
            u = source[e]
            if cap[e] > 0 and not done[u] and supply[u] == 0 and d + cost[e] < dist[u]:
                dist[u], into[u] = d + cost[e], e
                size = heap_push(heap_key, heap_node, size, d + cost[e], u)
    return into


@njit(cache=True, nogil=True)
def grouped(keys: Int32Array | Int64Array, n_keys: int) -> tuple[Int64Array, Int64Array]:
    """Positions 0..len(keys)-1 grouped by key (a counting sort): those with key k are
    ``members[start[k]:start[k + 1]]``, in order."""
    start = np.zeros(n_keys + 1, np.int64)
    for x in range(len(keys)):
        start[keys[x] + 1] += 1
    start = np.cumsum(start)
    fill = start[:-1].copy()
    members = np.empty(len(keys), np.int64)
    for x in range(len(keys)):
        members[fill[keys[x]]] = x
        fill[keys[x]] += 1
    return start, members


@njit(cache=True, nogil=True)
def heap_pop(key: Int64Array, node: Int64Array, size: int) -> int:
    size -= 1
    k, v, i = key[size], node[size], 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and key[c + 1] < key[c]:
            c += 1
        if key[c] >= k:
            break
        key[i], node[i], i = key[c], node[c], c
    key[i], node[i] = k, v
    return size


@njit(cache=True, nogil=True)
def heap_push(key: Int64Array, node: Int64Array, size: int, k: int, v: int) -> int:
    i = size
    while i > 0 and key[(i - 1) // 2] > k:
        p = (i - 1) // 2
        key[i], node[i], i = key[p], node[p], p
    key[i], node[i] = k, v
    return size + 1


@njit(cache=True, nogil=True)
def thread_tree(
    n: int,
    parent: Int64Array,
    thread: Int64Array,
    rev_thread: Int64Array,
    succ_num: Int64Array,
    last_succ: Int64Array,
) -> None:
    """Preorder thread, subtree sizes and last successors of the tree given by ``parent``."""
    root = n
    first, children = grouped(parent[:n], n + 1)
    order = np.empty(n + 1, np.int64)
    stack = np.empty(n + 1, np.int64)
    stack[0], depth, k = root, 1, 0
    while depth:
        depth -= 1
        v = stack[depth]
        order[k], k = v, k + 1
        for q in range(first[v], first[v + 1]):
            stack[depth], depth = children[q], depth + 1
    position = np.empty(n + 1, np.int64)
    for q in range(n + 1):
        u, w = order[q], order[(q + 1) % (n + 1)]
        thread[u], rev_thread[w], position[u], succ_num[u] = w, u, q, 1
    for q in range(n, 0, -1):
        succ_num[parent[order[q]]] += succ_num[order[q]]
    for u in range(n + 1):
        last_succ[u] = order[position[u] + succ_num[u] - 1]


@njit(cache=True, nogil=True)
def potentials(
    n: int,
    cost: Int64Array,
    parent: Int64Array,
    pred: Int64Array,
    thread: Int64Array,
    pred_dir: Int64Array,
    pi: Int64Array,
) -> None:
    """Node potentials that price every tree arc at zero reduced cost (root at 0), in thread order."""
    root = n
    pi[root] = 0
    u = thread[root]
    while u != root:
        pi[u] = pi[parent[u]] - pred_dir[u] * cost[pred[u]]
        u = thread[u]


@njit(cache=True, nogil=True)
def restart_tree(
    n: int,
    source: Int32Array,
    cost: Int64Array,
    art: int,
    parent: Int64Array,
    pred: Int64Array,
    thread: Int64Array,
    pred_dir: Int64Array,
    pi: Int64Array,
) -> None:
    """Artificial arcs priced for the new costs, and the potentials of the kept tree."""
    m = len(source) - n
    for e in range(m, m + n):
        cost[e] = art if source[e] == n else 0
    potentials(n, cost, parent, pred, thread, pred_dir, pi)


@njit(cache=True, nogil=True)
def update_tree(
    in_arc: int,
    join: int,
    u_in: int,
    v_in: int,
    u_out: int,
    source: Int32Array,
    parent: Int64Array,
    pred: Int64Array,
    thread: Int64Array,
    rev_thread: Int64Array,
    succ_num: Int64Array,
    last_succ: Int64Array,
    pred_dir: Int64Array,
    dirty: Int64Array,
) -> None:
    """Swap the leaving arc (above ``u_out``) for ``in_arc``: re-hang the subtree of ``u_out`` from
    ``v_in`` through ``u_in``, reversing the stem between them (LEMON's ``updateTreeStructure``)."""
    old_rev_thread = rev_thread[u_out]
    old_succ_num = succ_num[u_out]
    old_last_succ = last_succ[u_out]
    v_out = parent[u_out]
    if u_in == u_out:
        parent[u_in] = v_in
        pred[u_in] = in_arc
        pred_dir[u_in] = UP if u_in == source[in_arc] else DOWN
        if thread[v_in] != u_out:
            after = thread[old_last_succ]
            thread[old_rev_thread] = after
            rev_thread[after] = old_rev_thread
            after = thread[v_in]
            thread[v_in] = u_out
            rev_thread[u_out] = v_in
            thread[old_last_succ] = after
            rev_thread[after] = old_last_succ
    else:
        thread_continue = thread[old_last_succ] if old_rev_thread == v_in else thread[v_in]
        stem, par_stem = u_in, v_in
        last = last_succ[u_in]
        after = thread[last]
        thread[v_in] = u_in
        dirty[0], n_dirty = v_in, 1
        while stem != u_out:
            next_stem = parent[stem]
            thread[last] = next_stem
            dirty[n_dirty], n_dirty = last, n_dirty + 1
            before = rev_thread[stem]
            thread[before] = after
            rev_thread[after] = before
            parent[stem] = par_stem
            par_stem, stem = stem, next_stem
            last = rev_thread[par_stem] if last_succ[stem] == last_succ[par_stem] else last_succ[stem]
            after = thread[last]
        parent[u_out] = par_stem
        thread[last] = thread_continue
        rev_thread[thread_continue] = last
        last_succ[u_out] = last
        if old_rev_thread != v_in:
            thread[old_rev_thread] = after
            rev_thread[after] = old_rev_thread
        for k in range(n_dirty):
            rev_thread[thread[dirty[k]]] = dirty[k]
        subtree, last_of_out = 0, last_succ[u_out]
        u, p = u_out, parent[u_out]
        while u != u_in:
            pred[u] = pred[p]
            pred_dir[u] = -pred_dir[p]
            subtree += succ_num[u] - succ_num[p]
            succ_num[u] = subtree
            last_succ[p] = last_of_out
            u, p = p, parent[p]
        pred[u_in] = in_arc
        pred_dir[u_in] = UP if u_in == source[in_arc] else DOWN
        succ_num[u_in] = old_succ_num
    up_limit_out = join if last_succ[join] == v_in else -1
    last_succ_out = last_succ[u_out]
    u = v_in
    while u != -1 and last_succ[u] == v_in:
        last_succ[u] = last_succ_out
        u = parent[u]
    if join != old_rev_thread and v_in != old_rev_thread:
        u = v_out
        while u != up_limit_out and last_succ[u] == old_last_succ:
            last_succ[u] = old_rev_thread
            u = parent[u]
    elif last_succ_out != old_last_succ:
        u = v_out
        while u != up_limit_out and last_succ[u] == old_last_succ:
            last_succ[u] = last_succ_out
            u = parent[u]
    u = v_in
    while u != join:
        succ_num[u] += old_succ_num
        u = parent[u]
    u = v_out
    while u != join:
        succ_num[u] -= old_succ_num
        u = parent[u]
