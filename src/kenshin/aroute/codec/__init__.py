"""The A-route wire format: meter frames, collector envelopes, and a sans-I/O codec for both.

A **meter frame** travels end to end between a meter and the head-end; the collectors that
bundle frames into **envelopes** can neither read nor alter it (SPEC X2–X4)::

    header (14 bytes, big-endian, authenticated as AAD)
    ┌─────────┬──────┬───────────────┬────────────┐
    │ version │ type │ device_id u64 │ counter u32│ ‖ AES-128-GCM(body) ‖ tag (16)
    └─────────┴──────┴───────────────┴────────────┘
    nonce = device_id ‖ counter (12 bytes); key = the meter's own key for the frame's direction

The byte layouts of every body and of the envelope are in ``docs/protocols/aroute.md``. The
modules:

- :mod:`~kenshin.aroute.codec.layout`: the header, the fixed bodies and the interval-body
  directory (constants, structs, packing and parsing them);
- :mod:`~kenshin.aroute.codec.encode`: frames from values (meter side, vectorized over meters;
  the head-end's downlink frames);
- :mod:`~kenshin.aroute.codec.decode`: frames to columns (head-end side) and downlink frames to
  polls and commands (meter side);
- :mod:`~kenshin.aroute.codec.envelope`: the collector envelope.

Nothing here does I/O or reads the time; the one side effect is logging of rejected frames,
rate-limited on a monotonic clock (:class:`~kenshin.aroute.codec.decoded.RejectionLog`). The
replay check, whose windows may live in a database, is the head-end's: it asks its guard between
:meth:`~kenshin.aroute.codec.decode.FrameDecoder.authenticate` and
:meth:`~kenshin.aroute.codec.decode.FrameDecoder.parse`. Encoding is vectorized over meters (one
numpy build of all plaintexts, then one AES-GCM call per frame); decoding authenticates frame by
frame and parses the plaintexts of all frames with the same block layout with one
``np.frombuffer``.
"""
