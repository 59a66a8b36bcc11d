drop venue, seq, ok
| to out
