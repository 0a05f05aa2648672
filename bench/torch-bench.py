#!/usr/bin/env python3
"""The bench shapes of bench/train.bench.ts in PyTorch + transformers, for its side-by-side ratios.

    python3 bench/torch-bench.py --shape small,medium,large [--layers N] [--batch N] [--seq N] [--steps N] [--gen N]
        [--dtypes fp32,bf16] [--out FILE|-]

Same models and work as the TypeScript bench: Llama shapes trained in full with AdamW (lr 1e-3, gradient clipping at
1.0), float32, eager attention, the whole batch in one pass; mistral7b is Mistral-7B-v0.1's config with the pause
wrapper's training (a pause embedding row and a 2-way pause head train, everything else frozen, the pause head on the
detached hidden state), in float32 and bfloat16 by default. Decoding is greedy with the KV cache, batch as in training,
a 16-token prompt, one host read of the chosen tokens per step (what a generator checking for the end of text does).
Weights are random, made on the GPU. Writes a JSON list with one object per shape and dtype; a failure (e.g. out of
memory) is recorded in that object's "error" and the others still run.
"""
import argparse
import json
import sys
import time

SHAPES = {
    "small": dict(layers=4, width=128, heads=4, kv_heads=4, ffn=512, vocab=512, seq=128, batch=8, steps=5),
    "medium": dict(layers=8, width=512, heads=8, kv_heads=8, ffn=2048, vocab=512, seq=256, batch=16, steps=3),
    "large": dict(layers=12, width=1024, heads=16, kv_heads=16, ffn=4096, vocab=512, seq=512, batch=8, steps=3),
    "mistral7b": dict(layers=32, width=4096, heads=32, kv_heads=8, ffn=14336, vocab=32000, seq=600, batch=8, steps=2, pause_only=True),
}
PROMPT = 16


def log(message):
    print(f"torch-bench: {message}", file=sys.stderr, flush=True)


def build(torch, shape, layers, max_positions, dtype, device):
    """A random Llama (or Mistral, for the pause shape) built directly on the device, eager attention."""
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

    common = dict(
        vocab_size=shape["vocab"], hidden_size=shape["width"], intermediate_size=shape["ffn"], num_hidden_layers=layers,
        num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"], max_position_embeddings=max_positions,
        rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )
    if shape.get("pause_only"):
        config = MistralConfig(**common, rms_norm_eps=1e-5, sliding_window=4096)
    else:
        config = LlamaConfig(**common, rms_norm_eps=1e-6)
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=dtype)
        except (TypeError, ValueError):  # transformers 4.x names it torch_dtype
            model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", torch_dtype=dtype)
    return model.to(device=device, dtype=dtype)


def random_ids(torch, rows, cols, vocab, device, seed, pause_every=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(4, vocab, (rows, cols), generator=g)
    if pause_every:
        ids.view(-1)[pause_every - 1 :: pause_every] = vocab  # the pause token, one in ten as in the seed's data
    return ids.to(device)


def sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def train_rate(torch, model, shape, batch, seq, steps, device, dtype):
    """Tokens per second of full training steps (warm-up step excluded)."""
    ids = random_ids(torch, batch, seq, shape["vocab"], device, 7, 10 if shape.get("pause_only") else 0)
    if shape.get("pause_only"):
        step, params = pause_step(torch, model, shape, ids, device, dtype)
    else:
        params = [p for p in model.parameters()]
        model.train()

        def step():
            return model(input_ids=ids, labels=ids).loss

    opt = torch.optim.AdamW(params, lr=1e-3)

    def update():
        loss = step()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    update()
    sync(torch, device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = update()
    sync(torch, device)
    elapsed = time.perf_counter() - start
    log(f"{shape['name']} {dtype}: train loss {loss.item():.3f}, {1000 * elapsed / steps:.0f} ms a step")
    return batch * seq * steps / elapsed


def pause_step(torch, model, shape, ids, device, dtype):
    """The pause wrapper's loss: the pause row replaces id V's embedding; LM loss on non-pause targets, pause-head loss on all."""
    V, H = shape["vocab"], shape["width"]
    for p in model.parameters():
        p.requires_grad_(False)
    model.train()
    embed = model.get_input_embeddings()
    pause_row = torch.nn.Parameter(0.02 * torch.randn(1, H, device=device, dtype=dtype))
    ctrl = torch.nn.Linear(H, 2, device=device, dtype=dtype)
    ce = torch.nn.functional.cross_entropy

    def step():
        is_pause = (ids == V).unsqueeze(-1)
        x = torch.where(is_pause, pause_row.expand(ids.shape[0], ids.shape[1], H), embed(ids.clamp(max=V - 1)))
        hidden = model.model(inputs_embeds=x).last_hidden_state[:, :-1]
        targets = ids[:, 1:]
        target_pause = targets == V
        lm = ce(model.lm_head(hidden).float().flatten(0, 1), targets.masked_fill(target_pause, -100).flatten())
        head = ce(ctrl(hidden.detach()).float().flatten(0, 1), (~target_pause).long().flatten())
        return lm + head

    return step, [pause_row, *ctrl.parameters()]


def decode_rate(torch, model, shape, batch, gen, device):
    """Tokens per second of greedy decoding steps after the prefill, one host read per step."""
    model.eval()
    prompt = random_ids(torch, batch, PROMPT, shape["vocab"], device, 11)
    with torch.no_grad():
        def run(n):
            out = model(input_ids=prompt, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            nxt.cpu()
            sync(torch, device)
            start = time.perf_counter()
            for _ in range(n - 1):
                out = model(input_ids=nxt, past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                nxt.cpu()
            sync(torch, device)
            return time.perf_counter() - start

        run(3)
        elapsed = run(gen)
    return batch * (gen - 1) / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="small")
    parser.add_argument("--layers", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--seq", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--gen", type=int, default=32)
    parser.add_argument("--dtypes", help="fp32, bf16 or both (default fp32; fp32,bf16 for mistral7b)")
    parser.add_argument("--out", default="-", help="file to write the JSON list to; - for standard output")
    args = parser.parse_args()

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    log(f"torch {torch.__version__} on {device_name}")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    results = []
    for name in args.shape.split(","):
        if name not in SHAPES:
            parser.error(f"unknown shape {name} (expected {', '.join(SHAPES)})")
        shape = dict(SHAPES[name], name=name)
        layers = args.layers or shape["layers"]
        batch = args.batch or shape["batch"]
        seq = args.seq or shape["seq"]
        steps = args.steps or shape["steps"]
        wanted = (args.dtypes or ("fp32,bf16" if shape.get("pause_only") else "fp32")).split(",")
        for dtype_name in wanted:
            # Whether float32 matmuls may run on TF32 tensor cores (torch's default: no); recorded with every figure.
            tf32 = bool(torch.backends.cuda.matmul.allow_tf32) if dtype_name == "fp32" and device == "cuda" else None
            result = dict(shape=name, layers=layers, batch=batch, seq=seq, dtype=dtype_name, device=device_name,
                          tf32=tf32, train_tokens_per_s=None, decode_tokens_per_s=None)
            model = None
            try:
                torch.manual_seed(0)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                model = build(torch, shape, layers, max(seq, PROMPT + args.gen) + 16, dtypes[dtype_name], device)
                result["train_tokens_per_s"] = train_rate(torch, model, shape, batch, seq, steps, device, dtypes[dtype_name])
                result["decode_tokens_per_s"] = decode_rate(torch, model, shape, batch, args.gen, device)
                if device == "cuda":
                    result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
            except Exception as err:  # noqa: BLE001 - one shape's failure (often out of memory) must not stop the others
                result["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            log(json.dumps(result))
            results.append(result)
            del model
            if device == "cuda":
                torch.cuda.empty_cache()
    text = json.dumps(results, indent=1)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
