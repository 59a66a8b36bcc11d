window tumbling 10s lateness 2s by sym
  emit n = count(), volume = sum(qty), avg_price = avg(price), hi = max(price),
       open = first(price), close = last(price), span = last(ts) - first(ts)
| to out
