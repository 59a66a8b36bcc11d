tee side
| filter ok
| to out
