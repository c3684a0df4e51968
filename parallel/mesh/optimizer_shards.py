"""The optimizer step of a split sample, its state sharded across the
sample's processes (ZeRO stage 1 within a sample).

Every process of a sample holds the whole of each replicated weight (a
convolution kernel shared by all blocks) and, after the gradient sums, the
whole of its gradient. Updating every weight on every process would keep
the optimizer's slots (Adam's two moments: twice the weights) whole on each
one. Here the replicated weights are shared out to the sample's processes
(cut into equal ranges for an elementwise rule, SGD's or Adam's; dealt out
whole for LAMB, whose trust ratio takes whole tensors); each updates only
its share, keeping slots for that alone, and one alltoall in the sample's
process set sends every process's new values to the others. Weights the
layout splits (CosmoFlow's first dense kernel) are updated slice by slice
where they lie, with slots of their slice.

Data-parallel groups deal out alike, so the processes at the same block of
every sample keep the same shards, as data-parallel replicas do.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import tensorflow.compat.v1 as tf

from core.errors import HarnessError


class UpdateRule(Protocol):
    """One optimizer's update of one weight, in TensorFlow."""

    slots: tuple[str, ...]       # the per-weight state it keeps (Adam: "m", "v")
    elementwise: bool            # False: it needs whole tensors (LAMB's norms), so no weight may be split

    def prepare(self, gradients: list[tf.Tensor]) -> tuple[list[tf.Tensor], list[tf.Operation]]:
        """The gradients as ``update`` takes them (LAMB clips them by their
        global norm: it is given them all, whole) and the step's own
        assignments (a step count)."""

    def update(self, weight: tf.Tensor, gradient: tf.Tensor,
               slots: list[tf.Variable]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """The new weight and the new value of each slot."""


class Piece(NamedTuple):
    """A flat range of one weight's elements, updated by one process."""
    weight: int
    start: int
    stop: int
    owner: int


def share_out(sizes: list[int], shares: int, elementwise: bool) -> list[Piece]:
    """Who updates what of whole weights of ``sizes`` elements. An
    elementwise rule's weights are cut into ``shares`` near-equal ranges,
    one per process: one large kernel (CosmoFlow's last convolution holds
    most of its weights) would otherwise weigh on one process. Other rules
    need whole tensors, which are dealt out largest first, each to the
    process holding least so far: shares differ by at most a weight."""
    if elementwise:
        return [Piece(w, n * p // shares, n * (p + 1) // shares, p) for w, n in enumerate(sizes)
                for p in range(shares) if n * p // shares < n * (p + 1) // shares]
    held, pieces = [0] * shares, []
    for w in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        owner = held.index(min(held))
        held[owner] += sizes[w]
        pieces.append(Piece(w, 0, sizes[w], owner))
    return sorted(pieces)


def sharded_step(rule: UpdateRule, variables: list[tf.Variable], values: list[tf.Tensor],
                 gradients: list[tf.Tensor], split: list[bool], hvd: Any, process_set: Any | None) -> tf.Operation:
    """The training step's update of ``variables`` (this process's slice
    variables; ``values``: the step's reads of them) from their summed
    ``gradients``; ``split[i]``: the layout splits weight i. ``process_set``:
    the sample's processes (None: a sample on one process, which updates
    every weight)."""
    if not rule.elementwise and any(split):
        raise HarnessError("this optimizer needs whole weights, but the layout splits some; "
                           "use a layout that keeps every weight whole")
    peers = process_set.ranks if process_set is not None else [hvd.rank()]
    me = peers.index(hvd.rank())
    whole = [i for i, s in enumerate(split) if not s]
    shared = [piece._replace(weight=whole[piece.weight]) for piece in
              share_out([values[i].shape.num_elements() for i in whole], len(peers), rule.elementwise)]
    own_slices = [Piece(i, 0, values[i].shape.num_elements(), me) for i, s in enumerate(split) if s]

    with tf.variable_scope("optimizer"):        # the optimizer state: optimizer/<weight>_<slot>[_<start>]
        prepared, assignments = rule.prepare(gradients)
        new_pieces = {}
        for piece in [p for p in shared if p.owner == me] + own_slices:
            whole_weight = piece.stop - piece.start == values[piece.weight].shape.num_elements()
            name = variables[piece.weight].op.name + ("" if whole_weight else f"_{piece.start}")
            value, gradient = (_flat_range(t, piece) for t in (values[piece.weight], prepared[piece.weight]))
            slots = [tf.get_variable(f"{name}_{slot}", value.shape, value.dtype, tf.zeros_initializer(),
                                     trainable=False) for slot in rule.slots]
            new_pieces[piece], new_slots = rule.update(value, gradient, slots)
            assignments += [tf.assign(slot, v) for slot, v in zip(slots, new_slots)]
        # Every process runs every gradient's collectives, those of weights
        # it does not update included: one that skipped them would leave
        # its peers waiting.
        with tf.control_dependencies([g.op for g in gradients]):
            new_pieces.update(_exchange(new_pieces, shared, peers, me, hvd, process_set))
        for i, variable in enumerate(variables):
            parts = [new_pieces[p] for p in shared + own_slices if p.weight == i]
            new_value = parts[0] if len(parts) == 1 else tf.concat(parts, 0)
            assignments.append(tf.assign(variable, tf.reshape(new_value, values[i].shape)))
        return tf.group(assignments)


def _flat_range(t: tf.Tensor, piece: Piece) -> tf.Tensor:
    """``piece``'s elements of ``t``; a whole weight keeps its shape."""
    if piece.stop - piece.start == t.shape.num_elements():
        return t
    return tf.reshape(t, [-1])[piece.start:piece.stop]


def _exchange(new_pieces: dict[Piece, tf.Tensor], pieces: list[Piece], peers: list[int], me: int, hvd: Any,
              process_set: Any | None) -> dict[Piece, tf.Tensor]:
    """The new values of the ``pieces`` (of whole weights, in weight order)
    other processes update, each process sending its own to every peer in
    one alltoall (with per-destination splits, as the halo exchange: it runs
    in any process set)."""
    theirs = [p for p in pieces if p.owner != me]
    if not theirs:
        return {}
    mine = [tf.reshape(new_pieces[p], [-1]) for p in pieces if p.owner == me]
    buffer = tf.concat(mine, 0) if mine else tf.zeros([0])
    sends = [0 if peer == me else buffer.shape.num_elements() for peer in range(len(peers))]
    received, _ = hvd.alltoall(tf.concat([buffer] * (len(peers) - 1), 0), splits=tf.constant(sends, tf.int32),
                               name="optimizer_shards", process_set=process_set)
    # Received in peer order, each peer's pieces in weight order.
    theirs.sort(key=lambda p: (p.owner, p.weight, p.start))
    parts = tf.split(received, [p.stop - p.start for p in theirs])
    return {p: part for p, part in zip(theirs, parts)}
