sample 1 in 3
| to out
