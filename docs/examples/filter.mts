# Keeps watched symbols above the minimum price.
filter price > $min_price and sym in @watch
| to out
