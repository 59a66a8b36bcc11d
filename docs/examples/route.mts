big: route side when price * qty > $big
   | to out
