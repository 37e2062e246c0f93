"""What the user asked for: ``config.ini`` read into frozen attrs classes, with every default.

``ini`` parses the file and names the file, section and key in every error;
``words`` holds the boolean words the file and MQTT payloads share. May import
only ``octolux.lxp``.
"""
