select sym, price, ts
| to out
