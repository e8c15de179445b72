#!/usr/bin/env python3
# A Python client of the specdec gateway: streams specdec.v1.Gateway/Generate for one prompt,
# prints the text as it arrives (stdout) and each speculation round's record (stderr), or with
# --json one JSON document with the token ids, text, rounds, finish reason and usage.
# Stubs: generated from proto/ at build time into BUILD_DIR/python (see README.md beside this).
import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def import_stubs():
    """The generated modules: from PYTHONPATH, SPECDEC_PYTHON_STUBS, or the default build dir."""
    for extra in [None, os.environ.get("SPECDEC_PYTHON_STUBS"), str(REPO / "build" / "python")]:
        if extra:
            sys.path.insert(0, extra)
        try:
            from specdec.v1 import gateway_pb2, gateway_pb2_grpc
            return gateway_pb2, gateway_pb2_grpc
        except ImportError:
            if extra:
                sys.path.remove(extra)
    sys.exit("generate.py: no stubs (specdec/v1/gateway_pb2.py): build the target "
             "specdec_python_stubs and set PYTHONPATH=BUILD_DIR/python")


def parse_args():
    p = argparse.ArgumentParser(description="Generate text with the specdec gateway.")
    p.add_argument("--target", default="localhost:50050", help="gateway address host:port")
    p.add_argument("--prompt", required=True, help="prompt text")
    p.add_argument("--max_new_tokens", type=int, default=32,
                   help="tokens to generate at most (0: the gateway's default)")
    p.add_argument("--k", type=int, default=4, help="draft tokens per round (0: no speculation)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--coupling", choices=["rejection", "shared_noise"], default=None,
                   help="sampled speculation: shared_noise gives plain sampling's tokens for the "
                        "seed whatever the draft (default: the gateway's)")
    p.add_argument("--timeout", type=float, default=60.0, help="request deadline, seconds")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document at the end instead of streaming text")
    return p.parse_args()


def round_line(r, pb2):
    fallback = "" if r.fallback == pb2.FALLBACK_UNSPECIFIED else \
        f" fallback={pb2.Fallback.Name(r.fallback)}"
    return (f"[round {r.round}] K={r.num_draft_tokens} proposed={r.num_proposed} "
            f"accepted={r.num_accepted} emitted={r.tokens_emitted} draft={r.draft_ms:.2f}ms "
            f"verify={r.verify_ms:.2f}ms gateway={r.gateway_ms:.2f}ms "
            f"network={r.network_ms:.2f}ms{' overlapped' if r.overlapped else ''}{fallback}")


def to_dict(message):
    """A flat message (RoundRecord, Usage) as a dict, every field, enums by name."""
    out = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.enum_type is not None:
            value = field.enum_type.values_by_number[value].name
        out[field.name] = value
    return out


def main():
    args = parse_args()
    try:
        import grpc
    except ImportError:
        sys.exit("generate.py: no Python gRPC: apt-get install python3-grpcio python3-protobuf "
                 "(or pip install grpcio protobuf)")
    pb2, pb2_grpc = import_stubs()

    request = pb2.GenerateRequest(
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
        sampling=pb2.SamplingParameters(
            temperature=args.temperature, top_p=args.top_p, seed=args.seed,
            coupling={None: pb2.SAMPLING_COUPLING_UNSPECIFIED,
                      "rejection": pb2.SAMPLING_COUPLING_REJECTION,
                      "shared_noise": pb2.SAMPLING_COUPLING_SHARED_NOISE}[args.coupling]),
        speculation=pb2.SpeculationParameters(num_draft_tokens=args.k),
        include_rounds=True)
    ids, text, rounds, last, request_id = [], [], [], None, ""
    with grpc.insecure_channel(args.target) as channel:
        stub = pb2_grpc.GatewayStub(channel)
        try:
            for msg in stub.Generate(request, timeout=args.timeout):
                request_id = request_id or msg.request_id
                ids.extend(msg.token_ids)
                text.append(msg.text)
                rounds.extend(msg.rounds)
                if not args.json:
                    sys.stdout.write(msg.text)
                    sys.stdout.flush()
                    for r in msg.rounds:
                        print(round_line(r, pb2), file=sys.stderr)
                if msg.finish_reason != pb2.FINISH_REASON_UNSPECIFIED:
                    last = msg
        except grpc.RpcError as e:
            if not args.json:
                print()
            print(f"generate.py: {e.code().name} {e.details()}", file=sys.stderr)
            return 2 if e.code() == grpc.StatusCode.INVALID_ARGUMENT else 1

    usage = last.usage if last else pb2.Usage()
    finish = pb2.FinishReason.Name(last.finish_reason) if last else "FINISH_REASON_UNSPECIFIED"
    if args.json:
        print(json.dumps({"request_id": request_id, "token_ids": ids, "text": "".join(text),
                          "finish_reason": finish, "usage": to_dict(usage),
                          "rounds": [to_dict(r) for r in rounds]}, ensure_ascii=False))
    else:
        print()
        tokens_per_s = usage.generated_tokens * 1000.0 / usage.total_ms if usage.total_ms else 0.0
        print(f"[{finish}: {usage.prompt_tokens} prompt + {usage.generated_tokens} generated "
              f"tokens, {usage.rounds} rounds, {usage.accepted_tokens}/{usage.drafted_tokens} "
              f"drafts accepted, {usage.overlapped_rounds} overlapped, {usage.total_ms:.1f} ms, "
              f"{tokens_per_s:.1f} tokens/s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
