"""Language: the anatomy/tool vocabulary (and later the command parser). No ROS imports."""
