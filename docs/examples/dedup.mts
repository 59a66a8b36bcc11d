dedup sym, venue within 5s
| to out
