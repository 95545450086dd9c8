print("dyninka")
