sample 1 in 3 by sym
| to out
