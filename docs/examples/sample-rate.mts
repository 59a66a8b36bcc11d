sample 2 per 1s
| to out
