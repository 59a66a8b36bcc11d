to out, side
