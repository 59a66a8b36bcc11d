enrich @instruments on sym select sector, lot
| to out
