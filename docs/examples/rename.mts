rename price as px, qty as size
| to out
