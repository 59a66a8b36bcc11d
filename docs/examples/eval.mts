# Computes three fields; `seq + 1` stays u64.
eval notional = price * qty, side = if(qty > 0, "buy", "sell"), next = seq + 1
| to out
