window sliding 10s every 5s lateness 0s emit n = count(), total = sum(qty)
| to out
